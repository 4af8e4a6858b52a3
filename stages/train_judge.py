"""Stage train_judge: fit the configured judge (`judge=probe|vlm|clue`) on train, select on val,
save it. A zero-shot judge (clue) fits nothing: its folder holds its config and constitution, so
every score item loads any judge the same way.

The train rows are the split's train records plus their cross-modal variants (stage augment);
val holds originals only, so the epoch is chosen on the kind of rows own_test scores.

Inputs:  data/split/dataset.parquet, data/embed/features.parquet, data/ingest/images/,
         data/augment/variants.parquet, data/augment/images/
Outputs: data/train_judge/judge/ (safetensors + judge.json), metrics/train_judge.json,
         plots/train_judge/history.csv
Params:  judge
"""

from pathlib import Path

import polars as pl

from safeforge import io
from safeforge.config import stage_params
from safeforge.judges.base import build_judge
from safeforge.metrics import StageAccounting
from safeforge.stage import read_table, run

PARAMS = ("judge",)
OUT = Path("data/train_judge/judge")


def main() -> None:
    params = stage_params(PARAMS)["judge"]
    table = read_table("data/split/dataset.parquet").join(
        read_table("data/embed/features.parquet").drop("image_id"), on="record_id", how="inner"
    )
    variants = read_table("data/augment/variants.parquet")
    acct = StageAccounting("train_judge")
    originals = table.filter(pl.col("split") == "train")
    # a variant has the judge's inputs and targets; the quality columns stay null
    train = pl.concat([originals, variants], how="diagonal_relaxed")
    val = table.filter(pl.col("split") == "val")
    acct.rows_in = acct.rows_out = train.height + val.height
    judge = build_judge(params, train, val)
    judge.save(OUT)
    # one row per epoch or step; a zero-shot judge has none, and DVC still needs the file
    empty = {"step": pl.Int64, "train_loss": pl.Float64, "val_loss": pl.Float64}
    history = pl.DataFrame(judge.history) if judge.history else pl.DataFrame(schema=empty)
    with io.atomic_path("plots/train_judge/history.csv") as tmp:
        history.write_csv(tmp)
    summary = dict(judge.train_summary)
    acct.perf["train_seconds"] = summary.pop("train_seconds", None)
    acct.extra.update(
        judge=judge.kind,
        train_rows=train.height,
        train_variant_rows=variants.height,
        val_rows=val.height,
        **summary,
    )
    acct.finish("metrics/train_judge.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
