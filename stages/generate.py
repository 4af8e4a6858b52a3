"""Stage generate: choose the risk scenarios each image really shows and write the records.

Scenarios fit an image by MiniLM similarity between its description (caption, OCR text) and the
scenario's triggers. Images that no scenario fits are dropped with reason `no_fitting_scenario`.

Inputs:  data/describe/descriptions.parquet, data/ingest/images.parquet
Outputs: data/generate/records.parquet, data/generate/dropped.parquet, metrics/generate.json
Params:  generate, generator, scenarios, taxonomy
"""

import itertools
from pathlib import Path

import numpy as np

from safeforge.cache import RowCache
from safeforge.config import stage_params
from safeforge.embeddings.text import TextEncoder, encode_cached
from safeforge.generate.records import build_records, fit_scores
from safeforge.generate.scenarios import load_library
from safeforge.generate.template import TemplateGenerator
from safeforge.metrics import StageAccounting
from safeforge.stage import read_table, run, write_table

PARAMS = ("generate", "generator", "scenarios", "taxonomy")
OUT = Path("data/generate")


def main() -> None:
    p = stage_params(PARAMS)
    params, gen = p["generate"], p["generator"]
    if gen["backend"] != "template":
        raise ValueError(f"generator.backend={gen['backend']!r}: only 'template' is available yet")
    scenarios = load_library(p["scenarios"]["library"], p["taxonomy"]["categories"])
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
    acct.extra.update(
        cache.stats(),
        records_out=records.height,
        records_by_label=dict(records.group_by("label").len().iter_rows()),
    )
    write_table(OUT / "records.parquet", records, suite="records")
    acct.finish("metrics/generate.json", OUT / "dropped.parquet")


if __name__ == "__main__":
    run(main)
