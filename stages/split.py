"""Stage split: train/val/test grouped by image cluster, so no image leaks across splits.

Inputs:  data/quality/clean.parquet
Outputs: data/split/dataset.parquet, metrics/split.json
Params:  split
"""

from pathlib import Path

import polars as pl

from safeforge.config import stage_params
from safeforge.metrics import StageAccounting
from safeforge.split import split_table
from safeforge.stage import read_table, run, write_table

PARAMS = ("split",)
OUT = Path("data/split")


def main() -> None:
    params = stage_params(PARAMS)["split"]
    clean = read_table("data/quality/clean.parquet")
    acct = StageAccounting("split")
    acct.rows_in = clean.height
    dataset = split_table(clean, params["fractions"], params["seed"])
    acct.rows_out = dataset.height
    counts = dataset.group_by("split", "label").len().sort("split", "label")
    acct.extra["rows_by_split_label"] = {f"{s}/{lab}": n for s, lab, n in counts.iter_rows()}
    images = dataset.group_by("split").agg(pl.col("image_id").n_unique())
    acct.extra["images_by_split"] = dict(images.iter_rows())
    write_table(OUT / "dataset.parquet", dataset, suite="splits")
    acct.finish("metrics/split.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
