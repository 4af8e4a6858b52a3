"""Stage score (one `foreach` item per name in score.benchmarks): the judges in score.judges
on a benchmark, side by side.

`own_test` is the dataset's own test split (subset = query_type: unsafe / benign / contrast);
any other name is read natively from benchmarks.<name>.root (src/safeforge/benchmarks/).
The benchmark folder itself is not a DVC dependency: published data does not change; after
editing one, rerun with `dvc repro -f -s score@<name>`.

The first judge in score.judges (default `trained`: the judge train_judge saved) fills the
metrics file's top level, predictions.parquet and the plots; each further judge (a zero-shot
judge by its zero_shot.<name> config, e.g. clue) goes under "other_judges" in the same metrics
file and into predictions.<name>.parquet.

Inputs:  data/train_judge/judge/, data/split/dataset.parquet, data/embed/features.parquet,
         data/ingest/images/, benchmarks.<name>.root (external benchmarks)
Outputs: data/score/<benchmark>/ (predictions.parquet, predictions.<judge>.parquet,
         refused.parquet), metrics/score/<benchmark>.json, plots/score/<benchmark>/roc.csv,
         plots/score/<benchmark>/confusion.csv
Params:  score, describe, taxonomy, zero_shot, benchmarks.${item}
"""

import sys
from pathlib import Path

import polars as pl

from safeforge.benchmarks.base import (
    REFUSED_SCHEMA,
    BenchmarkError,
    BenchmarkTable,
    load_benchmark,
)
from safeforge.config import OWN_TEST, stage_params
from safeforge.metrics import StageAccounting
from safeforge.scoring.benchmark import judges_to_score, score_benchmark
from safeforge.scoring.evaluate import write_plots
from safeforge.stage import read_table, run, write_table

PARAMS = ("score", "describe", "taxonomy", "zero_shot", "benchmarks.${item}")


def own_test_items(split: str, version: str | None = None) -> BenchmarkTable:
    """The split's records with the features embed made for them, their image and query: the
    inputs of every kind of judge."""
    dataset = read_table("data/split/dataset.parquet").filter(pl.col("split") == split)
    features = read_table("data/embed/features.parquet").drop("image_id")
    items = dataset.join(features, on="record_id", how="inner").select(
        pl.col("record_id").alias("item_id"),
        "image_path",
        pl.col("query").alias("text"),
        "label",
        pl.col("query_type").alias("subset"),
        "category",
        "query_emb",
        "description_emb",
        "image_emb",
    )
    return BenchmarkTable(
        OWN_TEST, Path("data/split"), items, pl.DataFrame(schema=REFUSED_SCHEMA), version=version
    )


def main() -> None:
    name = sys.argv[1]
    p = stage_params(PARAMS, item=name)
    params, spec = p["score"], p[f"benchmarks.{name}"]
    if name not in params["benchmarks"]:
        raise KeyError(f"score: {name!r} is not in score.benchmarks {params['benchmarks']}")
    if spec["adapter"] == OWN_TEST:
        table = own_test_items(spec["split"], spec.get("version"))
    else:
        if not spec["root"]:
            raise BenchmarkError(
                f"score.benchmarks lists {name!r} but benchmarks.{name}.root is not set: "
                f"`dvc exp run -S benchmarks.{name}.root=/path/to/{name}`, or drop it from the list"
            )
        table = load_benchmark(name, spec, taxonomy=p["taxonomy"]["categories"])
    acct = StageAccounting(f"score/{name}")
    acct.rows_in = table.items.height + table.refused.height
    acct.drop(table.refused, pl.col("reason"), id_column="item_id")
    ocr = p["describe"]["ocr_min_confidence"] if params["ocr"] else None
    judges = judges_to_score(params["judges"], Path("data/train_judge/judge"), p["zero_shot"])
    out, others = Path("data/score") / name, {}
    for i, (judge_name, judge) in enumerate(judges):
        predictions, metrics = score_benchmark(
            judge, table, spec, params["threshold"], params["batch_size"], ocr
        )
        speed = metrics.pop("items_per_second")
        if i == 0:
            acct.perf["items_per_second"] = speed
        else:
            acct.perf.setdefault("other_judges", {})[judge_name] = {"items_per_second": speed}
        if i == 0:
            write_table(out / "predictions.parquet", predictions, suite="predictions")
            write_plots(predictions, Path("plots/score") / name)
            acct.rows_out = predictions.height
            acct.extra.update(metrics)  # accounting and scores in one file, for `dvc metrics`
        else:
            path = out / f"predictions.{judge_name}.parquet"
            write_table(path, predictions, suite="predictions")
            others[judge_name] = metrics
        del judge  # released before the next one loads: one model in memory at a time
    if others:
        acct.extra["other_judges"] = others
    acct.finish(f"metrics/score/{name}.json", dropped_path=out / "refused.parquet")


if __name__ == "__main__":
    run(main)
