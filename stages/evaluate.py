"""Stage evaluate (one `foreach` item per name in evaluate.benchmarks): the model under test
(evaluate.model) answers each item and the rater (evaluate.rater) rates each reply.

`own_test` is the dataset's own test split, rated against each record's guidance; any other
name is read natively from benchmarks.<name>.root, and one whose root is unset is skipped (the
report says so), as in stage score. Items past evaluate.max_items are dropped with reason
`beyond_max_items`; items the benchmark refuses (missing images) with theirs.
Models run on one CPU thread (`fixed_threads`): greedy replies then do not depend on the core
count (a last-bit difference in a logit can change a token), and two stages side by side do
not thrash (two 2-thread SmolLM2s on 2 cores ran over 10x slower). A GPU model is not slowed.

Inputs:  data/split/dataset.parquet, data/ingest/images/, benchmarks.<name>.root
Outputs: data/evaluate/<benchmark>/ (responses.parquet, dropped.parquet),
         metrics/evaluate/<benchmark>.json
Params:  evaluate.model evaluate.rater evaluate.batch_size evaluate.max_items evaluate.awareness evaluate.rubric evaluate.models.${evaluate.model} evaluate.models.${evaluate.rater} benchmarks.${item} taxonomy
"""

import logging
import sys
from pathlib import Path

import polars as pl

from safeforge.benchmarks.base import load_benchmark, split_as_benchmark
from safeforge.cache import RowCache
from safeforge.config import OWN_TEST, stage_params
from safeforge.determinism import fixed_threads
from safeforge.executors import use_configured_executor
from safeforge.metrics import StageAccounting
from safeforge.responses.evaluation import evaluate_responses
from safeforge.stage import read_table, run, write_table

log = logging.getLogger("stages.evaluate")
PARAMS = (
    "evaluate.model",
    "evaluate.rater",
    "evaluate.batch_size",
    "evaluate.max_items",
    "evaluate.awareness",
    "evaluate.rubric",
    "evaluate.models.${evaluate.model}",
    "evaluate.models.${evaluate.rater}",
    "benchmarks.${item}",
    "taxonomy",
)


def main() -> None:
    use_configured_executor()  # local or ray: where row-cache misses are computed
    name = sys.argv[1]
    p = stage_params(PARAMS, item=name)
    spec = p[f"benchmarks.{name}"]
    acct = StageAccounting(f"evaluate/{name}")
    out = Path("data/evaluate") / name
    if spec["adapter"] != OWN_TEST and not spec["root"]:
        reason = f"benchmarks.{name}.root is not set"
        log.warning(
            "evaluate/%s: skipped, %s (set it in conf/local/, see the README)", name, reason
        )
        acct.extra.update(benchmark=name, skipped=reason)
        acct.finish(f"metrics/evaluate/{name}.json", dropped_path=out / "dropped.parquet")
        return
    if spec["adapter"] == OWN_TEST:
        dataset = read_table("data/split/dataset.parquet")
        table = split_as_benchmark(dataset, spec["split"], spec.get("version"), reference=True)
    else:
        table = load_benchmark(name, spec, taxonomy=p["taxonomy"]["categories"])
    acct.rows_in = table.items.height + table.refused.height
    acct.drop(table.refused, pl.col("reason"), id_column="item_id")
    limit = p["evaluate.max_items"]
    items = table.items if limit is None else table.items.head(limit)
    acct.drop(table.items.slice(items.height), "beyond_max_items", id_column="item_id")
    params = {
        key.removeprefix("evaluate."): p[key]
        for key in PARAMS
        if key.startswith("evaluate.") and "${" not in key
    }
    models = {p["evaluate.model"]: p[f"evaluate.models.{p['evaluate.model']}"]}
    models[p["evaluate.rater"]] = p[f"evaluate.models.{p['evaluate.rater']}"]
    cache = RowCache("evaluate")
    with fixed_threads(1):
        responses, metrics = evaluate_responses(table, items, spec, params, models, cache)
    write_table(out / "responses.parquet", responses, suite="responses")
    acct.rows_out = responses.height
    acct.extra.update(metrics)
    acct.perf["row_cache"] = cache.stats()
    acct.finish(f"metrics/evaluate/{name}.json", dropped_path=out / "dropped.parquet")


if __name__ == "__main__":
    run(main)
