"""Stage quality: image checks (size, aspect, blank, blur), text checks (lengths, bare refusals,
refused benign items), label and category validity. Score columns stay on every row.

Inputs:  data/dedup/kept.parquet, data/ingest/images/
Outputs: data/quality/clean.parquet, data/quality/dropped.parquet, metrics/quality.json,
         plots/quality/scores.csv
Params:  quality, taxonomy
"""

from pathlib import Path

import polars as pl

from safeforge import io
from safeforge.config import stage_params
from safeforge.metrics import StageAccounting
from safeforge.quality.checks import SCORE_COLUMNS, run_checks
from safeforge.stage import read_table, run, write_table

PARAMS = ("quality", "taxonomy")
OUT = Path("data/quality")


def main() -> None:
    p = stage_params(PARAMS)
    kept = read_table("data/dedup/kept.parquet")
    acct = StageAccounting("quality")
    acct.rows_in = kept.height
    scored = run_checks(kept, p["quality"], p["taxonomy"]["categories"])
    failed = scored.filter(pl.col("quality_reason").is_not_null())
    acct.drop(failed, pl.col("quality_reason"), "record_id")
    clean = scored.filter(pl.col("quality_reason").is_null()).drop("quality_reason")
    acct.rows_out = clean.height
    write_table(OUT / "clean.parquet", clean, suite="kept")
    with io.atomic_path("plots/quality/scores.csv") as tmp:
        scored.select(
            "record_id", *SCORE_COLUMNS, pl.col("quality_reason").fill_null("kept")
        ).write_csv(tmp)
    acct.finish("metrics/quality.json", OUT / "dropped.parquet")


if __name__ == "__main__":
    run(main)
