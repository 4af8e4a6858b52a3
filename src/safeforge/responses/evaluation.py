"""One benchmark's replies, rated: what the evaluate stage writes and `safeforge eval` prints.

The model under test answers first (and, for benchmarks in evaluate.awareness.benchmarks, is
also asked whether the input is safe); it is closed before the rater loads, so two models never
hold GPU memory at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from safeforge.backends import Backend, Sampling, make_backend
from safeforge.benchmarks.base import BenchmarkTable
from safeforge.cache import RowCache
from safeforge.responses.awareness import awareness_metrics, questions, verdicts
from safeforge.responses.raters import HEURISTIC, HeuristicRater, ModelRater
from safeforge.responses.rates import response_metrics
from safeforge.responses.respond import NOT_A_RESPONDER, ask, model_section, reply_columns

ITEM_COLUMNS = ["item_id", "label", "subset", "category", "text", "image_path", "reference"]


def _open(section: Mapping[str, Any], role: str) -> tuple[Backend, Sampling]:
    backend = make_backend(section)
    return backend, Sampling.from_params(section["sampling"], f"evaluate.models.{role}.sampling")


def evaluate_responses(
    table: BenchmarkTable,
    items: pl.DataFrame,
    spec: Mapping[str, Any],
    params: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    cache: RowCache,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The responses table (item, reply, rating, verdict) and its metrics for `items` (the
    table's items, or the first evaluate.max_items of them). `params` is the evaluate section
    (model, rater, batch_size, awareness, rubric); `models` holds at least the two it names."""
    model, rater_name = params["model"], params["rater"]
    if model in NOT_A_RESPONDER:
        raise ValueError(f"evaluate.model={model!r} rates replies but cannot write them")
    backend, sampling = _open(model_section(models, model, "model"), model)
    sees_images = backend.supports_images
    identity = backend.identity()
    batch = params["batch_size"]
    replies = ask(backend, cache, items, items["text"].to_list(), sampling, batch, "respond")
    out = items.select(ITEM_COLUMNS).with_columns(reply_columns(replies, "response"))
    awareness = table.name in params["awareness"]["benchmarks"]
    if awareness:
        texts = questions(items["text"].to_list(), params["awareness"]["prompt"])
        answers = ask(backend, cache, items, texts, sampling, batch, "awareness")
        out = out.with_columns(
            awareness_reply=pl.Series([r.text if r.ok else None for r in answers], dtype=pl.String),
            awareness_label=pl.Series(verdicts(answers), dtype=pl.String),
        )
    backend.close()  # before the rater loads: one model in memory at a time

    rater_section = model_section(models, rater_name, "rater")
    if rater_section.get("backend") == HEURISTIC:
        rater: HeuristicRater | ModelRater = HeuristicRater(rater_section, cache)
    else:
        rater_backend, rater_sampling = _open(rater_section, rater_name)
        rater = ModelRater(rater_backend, params["rubric"], cache, rater_sampling, batch)
    out = out.hstack(rater.rate(out))
    rater.close()

    metrics: dict[str, Any] = {
        "benchmark": table.name,
        "benchmark_version": table.version,
        "model": identity,
        "model_sees_images": sees_images,  # False: a text-only model answered without the image
        "rater": rater.kind,
        "rater_is_heuristic": isinstance(rater, HeuristicRater),
        "rubric": None if isinstance(rater, HeuristicRater) else str(params["rubric"]["version"]),
        **response_metrics(out),
    }
    if awareness:
        metrics["awareness"] = awareness_metrics(out, table.adapter, spec)
    return out, metrics
