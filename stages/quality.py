"""Stage quality: image checks (size, aspect, blank, blur), text checks (lengths, characters,
script, bare refusals, refused benign items), queries that ignore their image, label and
category validity, then a cap per category and label. Score columns stay on every row.

Inputs:  data/dedup/kept.parquet, data/embed/features.parquet (image lift, text-only score),
         data/embed/image_features.parquet
Outputs: data/quality/clean.parquet, data/quality/dropped.parquet, metrics/quality.json,
         plots/quality/scores.csv, plots/quality/hist/<score>.csv
Params:  quality, taxonomy
"""

from pathlib import Path

import polars as pl

from safeforge import io
from safeforge.config import stage_params
from safeforge.metrics import StageAccounting
from safeforge.quality.checks import (
    IMAGE_SCORE_COLUMNS,
    RECORD_FEATURE_COLUMNS,
    SCORE_COLUMNS,
    run_checks,
)
from safeforge.quality.plots import histograms
from safeforge.stage import read_table, run, write_table

PARAMS = ("quality", "taxonomy")
OUT = Path("data/quality")
SCATTER_SAMPLE = 5000  # rows in scores.csv: a scatter plot of a million points helps nobody


def main() -> None:
    p = stage_params(PARAMS)
    kept = read_table("data/dedup/kept.parquet")
    scores = read_table(
        "data/embed/features.parquet", columns=["record_id", *RECORD_FEATURE_COLUMNS]
    )
    stats = read_table(
        "data/embed/image_features.parquet", columns=["image_id", *IMAGE_SCORE_COLUMNS]
    )
    acct = StageAccounting("quality")
    acct.rows_in = kept.height
    table = kept.join(stats, on="image_id", how="left").join(scores, on="record_id", how="left")
    scored = run_checks(table, p["quality"], p["taxonomy"]["categories"])
    failed = scored.filter(pl.col("quality_reason").is_not_null())
    acct.drop(failed, pl.col("quality_reason"), "record_id")
    clean = scored.filter(pl.col("quality_reason").is_null()).drop("quality_reason")
    acct.rows_out = clean.height
    acct.extra["share_by_category_label"] = {
        f"{c}/{lab}": round(n / max(1, clean.height), 4)
        for c, lab, n in clean.group_by("category", "label").len().sort("category", "label").rows()
    }
    write_table(OUT / "clean.parquet", clean, suite="kept")
    outcome = scored.select("record_id", *SCORE_COLUMNS, pl.col("quality_reason").fill_null("kept"))
    with io.atomic_path("plots/quality/scores.csv") as tmp:
        outcome.sample(min(SCATTER_SAMPLE, outcome.height), seed=0).sort("record_id").write_csv(tmp)
    for column, hist in histograms(scored, SCORE_COLUMNS).items():
        with io.atomic_path(f"plots/quality/hist/{column}.csv") as tmp:
            hist.write_csv(tmp)
    acct.finish("metrics/quality.json", OUT / "dropped.parquet")


if __name__ == "__main__":
    run(main)
