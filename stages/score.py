"""Stage score (one `foreach` item per benchmark): the trained judge on a benchmark's items.

`own_test` is the dataset's own test split (subset = query_type: unsafe / benign / contrast).

Inputs:  data/train_judge/judge/, data/split/dataset.parquet, data/embed/features.parquet
Outputs: data/score/<benchmark>/predictions.parquet, metrics/score/<benchmark>.json,
         plots/score/<benchmark>/roc.csv, plots/score/<benchmark>/confusion.csv
Params:  score
"""

import sys
from pathlib import Path

import polars as pl

from safeforge.config import stage_params
from safeforge.judges.base import load_judge
from safeforge.metrics import StageAccounting
from safeforge.scoring.evaluate import evaluate, predict, write_plots
from safeforge.stage import read_table, run, write_table

PARAMS = ("score",)


def own_test_items() -> pl.DataFrame:
    dataset = read_table("data/split/dataset.parquet").filter(pl.col("split") == "test")
    features = read_table("data/embed/features.parquet").drop("image_id")
    return dataset.join(features, on="record_id", how="inner").select(
        pl.col("record_id").alias("item_id"),
        "label",
        pl.col("query_type").alias("subset"),
        "category",
        "query_emb",
        "description_emb",
        "image_emb",
    )


def main() -> None:
    benchmark = sys.argv[1] if len(sys.argv) > 1 else "own_test"
    params = stage_params(PARAMS)["score"]
    if benchmark != "own_test":
        raise ValueError(f"benchmark {benchmark!r}: only own_test can be scored yet")
    acct = StageAccounting(f"score/{benchmark}")
    items = own_test_items()
    acct.rows_in = acct.rows_out = items.height
    predictions = predict(load_judge(Path("data/train_judge/judge")), items, params["threshold"])
    write_table(
        Path("data/score") / benchmark / "predictions.parquet", predictions, suite="predictions"
    )
    write_plots(predictions, Path("plots/score") / benchmark)
    # accounting and scores in one file, for `dvc metrics show/diff`
    acct.extra.update(evaluate(predictions, params["threshold"]))
    acct.finish(f"metrics/score/{benchmark}.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
