"""LLaVA's instruction-tuning layout: an images/ folder and one JSON list per split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from safeforge.export.records import copy_images, image_name, meta, splits, turns


def record(row: dict[str, Any]) -> dict[str, Any]:
    """LLaVA marks where the image goes with an '<image>' line before the question."""
    return {
        "id": row["record_id"],
        "image": image_name(row["image_path"]),
        "conversations": turns("<image>\n" + row["query"], row["guidance"]),
        **meta(row),
    }


def write(dataset: pl.DataFrame, images_root: Path, folder: Path, card: str | None) -> int:
    n_images = copy_images(dataset, images_root, folder)
    for split in splits(dataset):
        rows = dataset.filter(pl.col("split") == split).iter_rows(named=True)
        text = json.dumps([record(row) for row in rows], ensure_ascii=False, indent=2)
        (folder / f"{split}.json").write_text(text + "\n", encoding="utf-8")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return n_images
