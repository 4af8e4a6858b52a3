"""Stage score (one `foreach` item per name in score.benchmarks): the judges in score.judges
on a benchmark, side by side.

`own_test` is the dataset's own test split (subset = query_type: unsafe / benign / contrast);
any other name is read natively from benchmarks.<name>.root (src/safeforge/benchmarks/). A
benchmark whose root is unset is skipped: empty outputs and a metrics file saying why, so
score.benchmarks can list every benchmark and each machine scores the ones it has (roots in a
git-ignored conf/local/, README "Benchmarks on your machine").
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

import logging
import sys
from pathlib import Path

import polars as pl

from safeforge.benchmarks.base import (
    load_benchmark,
)
from safeforge.config import OWN_TEST, stage_params
from safeforge.executors import use_configured_executor
from safeforge.metrics import StageAccounting
from safeforge.scoring.benchmark import judges_to_score, own_split_table, score_benchmark
from safeforge.scoring.evaluate import write_plots
from safeforge.stage import read_table, run, write_table

log = logging.getLogger("stages.score")
PARAMS = ("score", "describe", "taxonomy", "zero_shot", "benchmarks.${item}")


def skip(name: str, acct: StageAccounting, out: Path) -> None:
    """Outputs for a benchmark this machine does not have: empty plots, a metrics file that
    says why (the report lists it as not scored), no predictions."""
    reason = f"benchmarks.{name}.root is not set"
    log.warning("score/%s: skipped, %s (set it in conf/local/, see the README)", name, reason)
    empty = pl.DataFrame(
        schema={"label": pl.String, "p_unsafe": pl.Float64, "pred_label": pl.String}
    )
    write_plots(empty, Path("plots/score") / name)
    acct.extra.update(benchmark=name, skipped=reason)
    acct.finish(f"metrics/score/{name}.json", dropped_path=out / "refused.parquet")


def main() -> None:
    use_configured_executor()  # local or ray: where row-cache misses are computed
    name = sys.argv[1]
    p = stage_params(PARAMS, item=name)
    params, spec = p["score"], p[f"benchmarks.{name}"]
    if name not in params["benchmarks"]:
        raise KeyError(f"score: {name!r} is not in score.benchmarks {params['benchmarks']}")
    acct = StageAccounting(f"score/{name}")
    out = Path("data/score") / name
    if spec["adapter"] != OWN_TEST and not spec["root"]:
        skip(name, acct, out)
        return
    if spec["adapter"] == OWN_TEST:
        table = own_split_table(
            read_table("data/split/dataset.parquet"),
            read_table("data/embed/features.parquet"),
            spec["split"],
            spec.get("version"),
        )
    else:
        table = load_benchmark(name, spec, taxonomy=p["taxonomy"]["categories"])
    acct.rows_in = table.items.height + table.refused.height
    acct.drop(table.refused, pl.col("reason"), id_column="item_id")
    ocr = p["describe"]["ocr_min_confidence"] if params["ocr"] else None
    judges = judges_to_score(params["judges"], Path("data/train_judge/judge"), p["zero_shot"])
    others = {}
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
