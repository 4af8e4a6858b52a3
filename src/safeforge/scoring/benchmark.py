"""Scoring a saved judge on a benchmark read natively: its inputs, its metrics, the transfer score.

The score stage and `safeforge bench score` both call `score_benchmark`, so the figures a PR
shows in `dvc metrics diff` are the ones a user gets on the command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from safeforge.benchmarks.base import BenchmarkTable, get_adapter, split_as_benchmark
from safeforge.cache import RowCache
from safeforge.embeddings.features import EMB_COLUMNS, item_features
from safeforge.embeddings.text import TextEncoder
from safeforge.judges.base import Judge, build_judge, judge_class, load_judge
from safeforge.perception.nsfw import NsfwModel
from safeforge.perception.ocr import OcrReader
from safeforge.scoring.evaluate import evaluate, score_stream

TRAINED = "trained"  # in score.judges: the judge train_judge saved, whatever its kind


def own_split_table(
    dataset: pl.DataFrame, features: pl.DataFrame, split: str, version: str | None = None
) -> BenchmarkTable:
    """A split of the dataset as a benchmark, with the features embed made for its records:
    their image and query and what every kind of judge reads."""
    table = split_as_benchmark(dataset, split, version)
    table.items = table.items.join(
        features.drop("image_id").rename({"record_id": "item_id"}), on="item_id", how="inner"
    ).select(*table.items.columns, *EMB_COLUMNS)
    return table


def judge_inputs(
    judge: Judge, columns: list[str], ocr_min_confidence: float | None, batch_size: int
) -> Callable[[pl.DataFrame], pl.DataFrame] | None:
    """What turns items with `columns` into the judge's inputs: nothing when they are there
    (judges that read image and text, or the own split's precomputed features), else the
    dataset's own features, made for each item. `ocr_min_confidence` None leaves OCR out."""

    needed = set(judge.inputs) - set(columns)
    if not needed:
        return None
    if not needed <= set(EMB_COLUMNS) or not {"image_path", "text"} <= set(columns):
        raise ValueError(f"judge {judge.kind!r} needs {sorted(needed)}: scoring cannot make them")

    encoder, nsfw, cache = TextEncoder(), NsfwModel(), RowCache("perception")
    reader = None if ocr_min_confidence is None else OcrReader(min_confidence=ocr_min_confidence)

    def prepare(chunk: pl.DataFrame) -> pl.DataFrame:
        features = item_features(chunk, encoder, nsfw, reader, cache, batch_size)
        return chunk.hstack(features.drop("item_id"))

    return prepare


def score_benchmark(
    judge: Judge,
    table: BenchmarkTable,
    spec: Mapping[str, Any],
    threshold: float,
    batch_size: int,
    ocr_min_confidence: float | None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Predictions and metrics: overall, per subset, per category, and the benchmark's own
    headline figures where its adapter defines them."""
    prepare = judge_inputs(judge, table.items.columns, ocr_min_confidence, batch_size)
    started = time.perf_counter()
    predictions = score_stream(judge, table.items, threshold, batch_size, prepare, table.name)
    seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "benchmark": table.name,
        "benchmark_version": table.version,
        "judge": judge.kind,
        **evaluate(predictions, threshold),
        "refused": table.summary()["refused_by_reason"],
        "unmapped_source_categories": dict(sorted(table.unmapped.items())),
        "items_per_second": round(predictions.height / seconds, 2) if seconds > 0 else None,
    }
    if judge.stats:
        metrics["judge_stats"] = dict(judge.stats)  # e.g. invalid generations, fallbacks
    official = get_adapter(table.adapter).official if table.adapter else None
    if official is not None:
        metrics["official"] = official(predictions, spec)
    return predictions, metrics


def judges_to_score(
    names: Sequence[str], trained: Path, zero_shot: Mapping[str, Mapping[str, Any]]
) -> Iterator[tuple[str, Judge]]:
    """score.judges as (name, judge), in order: `trained` is the saved judge in `trained`; any
    other name is a zero-shot judge built from its config in `zero_shot` (e.g. clue).

    Names and kinds are checked now; each judge is loaded only when its turn comes, so two
    VLM judges never hold GPU memory at once."""
    if not names:
        raise ValueError("score.judges is empty: list at least `trained`")
    for name in names:
        if name == TRAINED:
            continue
        if name not in zero_shot:
            known = [TRAINED, *sorted(zero_shot)]
            raise KeyError(f"score.judges: unknown judge {name!r}; known: {known}")
        judge_class(zero_shot[name].get("kind"), where=f"zero_shot.{name}.kind")

    def load(name: str) -> Judge:
        return load_judge(trained) if name == TRAINED else build_judge(zero_shot[name])

    return ((name, load(name)) for name in names)
