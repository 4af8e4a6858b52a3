"""From described images to safety records: choose the scenarios each image really shows,
write the unsafe/benign pair for each, and add contrast records.

Record kinds (query_type):
- unsafe:   the image makes the query harmful (label unsafe), guidance warns specifically.
- benign:   sounds risky, is fine beside this image (label safe), guidance helps.
- contrast: an image-dependent unsafe query beside an unrelated image of the dataset (label
            safe), so that the label cannot be read from the text alone.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import polars as pl

from safeforge.cache import RowCache, cache_key, json_codec
from safeforge.determinism import stable_scores
from safeforge.generate.scenarios import Scenario
from safeforge.generate.template import TemplateGenerator, record_id

log = logging.getLogger(__name__)

RECORD_SCHEMA = {
    "record_id": pl.String,
    "image_id": pl.String,
    "image_path": pl.String,
    "scenario": pl.String,
    "category": pl.String,
    "label": pl.String,
    "query_type": pl.String,
    "query": pl.String,
    "risk_analysis": pl.String,
    "guidance": pl.String,
    "pair_id": pl.String,
    "similarity": pl.Float64,
    "generator": pl.String,
}


def fit_scores(description_emb: np.ndarray, trigger_embs: list[np.ndarray]) -> np.ndarray:
    """(n_images, n_scenarios): the best cosine between an image and any trigger of a scenario."""
    return np.stack([(description_emb @ t.T).max(axis=1) for t in trigger_embs], axis=1)


def choose(
    scores: np.ndarray, top_k: int, min_similarity: float, max_gap: float
) -> list[list[int]]:
    """Per image, its best-fitting scenarios: at most top_k, each >= min_similarity and within
    max_gap of the image's best fit (a weak second fit beside a strong first is noise)."""
    chosen = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:top_k]
        floor = max(min_similarity, float(row.max(initial=-1.0)) - max_gap)
        chosen.append([int(j) for j in order if row[j] >= floor])
    return chosen


def build_records(
    images: list[dict[str, Any]],
    scenarios: list[Scenario],
    scores: np.ndarray,
    generator: TemplateGenerator,
    cache: RowCache,
    top_k: int,
    min_similarity: float,
    max_gap: float,
    contrast_pairs: bool,
) -> tuple[pl.DataFrame, list[str]]:
    """Records for every image; also the ids of images that no scenario fits."""
    chosen = choose(scores, top_k, min_similarity, max_gap)
    calls = [(i, j) for i, js in enumerate(chosen) for j in js]  # (image, scenario) indices
    encode, decode = json_codec()
    written = cache.map(
        calls,
        key_fn=lambda c: cache_key(
            kind="generate", **generator.cache_parts(images[c[0]], scenarios[c[1]])
        ),
        compute=lambda batch: [generator.write(images[i], scenarios[j]) for i, j in batch],
        encode=encode,
        decode=decode,
        desc="generate",
    )
    rows = []
    for (i, j), variants in zip(calls, written, strict=True):
        image, scenario, fit = images[i], scenarios[j], scores[:, j]
        sim = _stored(fit[i])
        for out in variants:
            common = {
                "scenario": scenario.id,
                "category": scenario.category,
                "risk_analysis": out["risk_analysis"],
                "pair_id": record_id(image["image_id"], scenario.id, out["unsafe_query"]),
                "generator": generator.model_id,
            }
            unsafe, benign = out["unsafe_query"], out["benign_query"]
            rows.append(row(image, "unsafe", "unsafe", unsafe, out["unsafe_guidance"], sim, common))
            rows.append(row(image, "benign", "safe", benign, out["benign_guidance"], sim, common))
            if not (contrast_pairs and scenario.image_dependent):
                continue
            other = _unrelated_image(images, fit, min_similarity, image["image_id"], scenario.id)
            if other is not None:
                k, other_image = other
                guidance = generator.contrast_guidance(other_image, scenario)
                rows.append(
                    row(other_image, "contrast", "safe", unsafe, guidance, _stored(fit[k]), common)
                )
    unfit = [images[i]["image_id"] for i, js in enumerate(chosen) if not js]
    records = (
        pl.DataFrame(rows, schema=RECORD_SCHEMA) if rows else pl.DataFrame(schema=RECORD_SCHEMA)
    )
    # two fitting images of one scenario can share their least-fitting image and query variant:
    # the contrast record is then the same record twice
    unique = records.unique("record_id", keep="first", maintain_order=True)
    if unique.height < records.height:
        log.info("generate: %d repeated contrast records merged", records.height - unique.height)
    return unique, unfit


def _stored(score: float) -> float:
    """A fit score as the records keep it: SCORE_DECIMALS, so the last bits of the float32
    matmul (which vary with the CPU's kernels) never reach the file (determinism.py)."""
    return float(stable_scores(score))


def row(
    image: dict, query_type: str, label: str, query: str, guidance: str, sim: float, common: dict
) -> dict[str, Any]:
    return {
        "record_id": record_id(image["image_id"], common["scenario"], query_type, query),
        "image_id": image["image_id"],
        "image_path": image["path"],
        "label": label,
        "query_type": query_type,
        "query": query,
        "guidance": guidance,
        "similarity": sim,
        **common,
    }


def _unrelated_image(
    images: list[dict], fit: np.ndarray, min_similarity: float, exclude: str, salt: str
) -> tuple[int, dict] | None:
    """An image this scenario does not fit, picked by hash so contrasts spread over the dataset
    (the single least-fitting image would collect them all, and land in one split)."""
    candidates = [
        i for i, img in enumerate(images) if img["image_id"] != exclude and fit[i] < min_similarity
    ]
    if not candidates:
        return None
    i = min(candidates, key=lambda k: record_id(images[k]["image_id"], salt, exclude))
    return i, images[i]
