"""Score a judge on one benchmark table: predictions, metrics (overall, per subset, per
category) and the ROC / confusion tables that `dvc plots` draws."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from safeforge import io
from safeforge.judges.base import Judge
from safeforge.judges.metrics import (
    binary_metrics,
    confusion_rows,
    grouped_metrics,
    roc_points,
    threshold_labels,
)


def predict(judge: Judge, items: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """items: item_id, label, subset, category + the judge's inputs -> the predictions table."""
    if items.height == 0:
        raise ValueError("no items to score: an empty benchmark is an error, not a score of 0")
    out = judge.predict(items)
    return pl.concat(
        [items.select("item_id", "label", "subset", "category"), out], how="horizontal"
    ).with_columns(pred_label=pl.Series(threshold_labels(out["p_unsafe"].to_numpy(), threshold)))


def score_stream(
    judge: Judge,
    items: pl.DataFrame,
    threshold: float,
    batch_size: int,
    prepare: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    desc: str = "score",
) -> pl.DataFrame:
    """`predict` a batch at a time, `prepare` (the judge's inputs) included, so memory holds one
    batch of images and features, however large the benchmark."""
    if items.height == 0:
        raise ValueError("no items to score: an empty benchmark is an error, not a score of 0")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = []
    with tqdm(total=items.height, desc=desc, unit="item") as bar:
        for chunk in items.iter_slices(batch_size):
            parts.append(predict(judge, prepare(chunk) if prepare else chunk, threshold))
            bar.update(chunk.height)
    return pl.concat(parts)


def evaluate(predictions: pl.DataFrame, threshold: float) -> dict[str, Any]:
    labels, p = predictions["label"].to_list(), predictions["p_unsafe"].to_numpy()
    return {
        **binary_metrics(labels, p, threshold),
        "threshold": threshold,
        "by_subset": grouped_metrics(predictions, "subset", threshold),
        "by_category": grouped_metrics(predictions, "category", threshold),
    }


def write_plots(predictions: pl.DataFrame, folder: str | Path) -> None:
    folder = Path(folder)
    with io.atomic_path(folder / "roc.csv") as tmp:
        roc_points(predictions["label"].to_list(), predictions["p_unsafe"].to_numpy()).write_csv(
            tmp
        )
    with io.atomic_path(folder / "confusion.csv") as tmp:
        confusion_rows(
            predictions["label"].to_list(), predictions["pred_label"].to_list()
        ).write_csv(tmp)
