"""Stage dedup: exact and perceptual image duplicates, normalised-text query duplicates.

One keeper per cluster (the lowest id); every other row is dropped as duplicate_of:<keeper>.

Inputs:  data/generate/records.parquet, data/embed/features.parquet, data/ingest/images.parquet
Outputs: data/dedup/kept.parquet, data/dedup/dropped.parquet, metrics/dedup.json
Params:  dedup
"""

from pathlib import Path

import polars as pl

from safeforge.config import stage_params
from safeforge.dedup.records import dedup
from safeforge.metrics import StageAccounting
from safeforge.stage import read_table, run, write_table

PARAMS = ("dedup",)
OUT = Path("data/dedup")


def main() -> None:
    params = stage_params(PARAMS)["dedup"]
    records = read_table("data/generate/records.parquet")
    features = read_table("data/embed/features.parquet")
    images = (
        read_table("data/ingest/images.parquet")
        .select("image_id", "pixel_sha256")
        .join(features.select("image_id", "phash").unique("image_id"), on="image_id", how="inner")
    )
    acct = StageAccounting("dedup")
    acct.rows_in = records.height
    kept, dropped = dedup(records, images, params["phash_max_distance"], params["normalize_text"])
    acct.drop(dropped, pl.col("reason"), "record_id")
    acct.rows_out = kept.height
    acct.extra["dropped_by_method"] = (
        dict(dropped.group_by("method").len().iter_rows()) if dropped.height else {}
    )
    write_table(OUT / "kept.parquet", kept, suite="kept")
    acct.finish("metrics/dedup.json", OUT / "dropped.parquet")


if __name__ == "__main__":
    run(main)
