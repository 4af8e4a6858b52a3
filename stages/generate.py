"""Stage generate: choose the risk scenarios each image really shows and write the records.

generator.backend=template: scenarios from the library fit an image by MiniLM similarity between
its description and the scenario's triggers; images no scenario fits are dropped with reason
`no_fitting_scenario`. Any other backend (hf, openai, vllm) runs the RMS prompt chain of
conf/prompts/: the model decides which risks are real (`no_real_risk` drops the image); a reply
unusable twice is dropped with its reason, counted under malformed_outputs and kept, with its
text, in data/generate/malformed.parquet.

Inputs:  data/describe/descriptions.parquet, data/ingest/images.parquet
Outputs: data/generate/records.parquet, data/generate/dropped.parquet,
         data/generate/malformed.parquet, metrics/generate.json
Params:  generate, generator, scenarios, taxonomy, prompts
"""

import itertools
from pathlib import Path

import numpy as np
import polars as pl

from safeforge import io
from safeforge.cache import RowCache
from safeforge.chain.chat import Prompts, open_chat
from safeforge.config import stage_params
from safeforge.embeddings.text import TextEncoder, encode_cached
from safeforge.executors import use_configured_executor
from safeforge.generate.records import build_records, fit_scores
from safeforge.generate.rms import write_records
from safeforge.generate.scenarios import load_library
from safeforge.generate.template import TemplateGenerator
from safeforge.metrics import StageAccounting
from safeforge.stage import read_table, run, write_table

PARAMS = ("generate", "generator", "scenarios", "taxonomy", "prompts")
OUT = Path("data/generate")
FAILURE_SCHEMA = {n: pl.String for n in ("step", "item_id", "reason", "detail", "reply")}


def main() -> None:
    use_configured_executor()  # local or ray: where row-cache misses are computed
    p = stage_params(PARAMS)
    images = (
        read_table("data/describe/descriptions.parquet")
        .join(
            read_table("data/ingest/images.parquet").select("image_id", "path"),
            on="image_id",
            how="left",
        )
        .sort("image_id")
    )
    acct = StageAccounting("generate")
    acct.rows_in = images.height
    if p["generator"]["backend"] == "template":
        records, failures = from_templates(images, p, acct), pl.DataFrame(schema=FAILURE_SCHEMA)
    else:
        records, failures = from_model(images, p, acct)
    acct.extra.update(
        records_out=records.height,
        records_by_label=dict(records.group_by("label").len().iter_rows()),
    )
    io.write_parquet(OUT / "malformed.parquet", failures)
    if records.height == 0:  # nothing for the stages after; keep the evidence and say why
        acct.finish("metrics/generate.json", OUT / "dropped.parquet")
        raise RuntimeError(
            f"generate: no usable records from {p['generator']['backend']}:"
            f"{p['generator'].get('model')}; dropped images {dict(acct.dropped)}, malformed "
            f"outputs {acct.extra.get('malformed_outputs', {})}. The replies are in "
            f"{OUT / 'malformed.parquet'}, counts in metrics/generate.json"
        )
    write_table(OUT / "records.parquet", records, suite="records")
    acct.finish("metrics/generate.json", OUT / "dropped.parquet")


def from_model(
    images: pl.DataFrame, p: dict, acct: StageAccounting
) -> tuple[pl.DataFrame, pl.DataFrame]:
    params, gen = p["generate"], p["generator"]
    cache = RowCache("generate")
    chat = open_chat(gen, Prompts.from_params(p["prompts"]), cache, params["batch_size"])
    result = write_records(
        images.to_dicts(),
        chat,
        p["taxonomy"]["categories"],
        top_k=params["top_k"],
        contrast_pairs=params["contrast_pairs"],
        generator_id=f"{chat.backend.model_id}@{chat.backend.revision}",
    )
    dropped = pl.DataFrame(
        {"image_id": list(result.dropped), "reason": list(result.dropped.values())},
        schema={"image_id": pl.String, "reason": pl.String},
    )
    acct.drop(images.join(dropped, on="image_id"), pl.col("reason"), "image_id")
    acct.rows_out = images.height - dropped.height
    acct.perf.update(
        cache.stats(), model_requests=chat.requests, backend_faults=chat.backend_faults()
    )
    acct.extra.update(
        retried_outputs=dict(sorted(chat.retried.items())),
        malformed_outputs=chat.failure_counts(),
        **dict(sorted(result.counts.items())),
    )
    return result.records, pl.DataFrame(chat.failures, schema=FAILURE_SCHEMA)


def from_templates(images: pl.DataFrame, p: dict, acct: StageAccounting) -> pl.DataFrame:
    params, gen = p["generate"], p["generator"]
    scenarios = load_library(p["scenarios"]["library"], p["taxonomy"]["categories"])
    cache, encoder = RowCache("generate"), TextEncoder()
    description_emb = encode_cached(encoder, images["description"].to_list(), cache)
    # one call for every trigger of every scenario, split back per scenario
    flat = encode_cached(encoder, [t for s in scenarios for t in s.triggers], cache)
    bounds = np.cumsum([0, *(len(s.triggers) for s in scenarios)])
    trigger_embs = [flat[a:b] for a, b in itertools.pairwise(bounds)]
    records, unfit = build_records(
        images.to_dicts(),
        scenarios,
        fit_scores(description_emb, trigger_embs),
        TemplateGenerator(gen["model"], gen["revision"]),
        cache,
        top_k=params["top_k"],
        min_similarity=params["min_similarity"],
        max_gap=params["max_gap"],
        contrast_pairs=params["contrast_pairs"],
    )
    acct.drop(images.filter(images["image_id"].is_in(unfit)), "no_fitting_scenario", "image_id")
    acct.rows_out = images.height - len(unfit)
    acct.perf.update(cache.stats())
    return records


if __name__ == "__main__":
    run(main)
