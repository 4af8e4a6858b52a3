"""ShareGPT layout as LLaMA-Factory reads multimodal data: one JSONL per split, an images list
per record and an '<image>' token in the human turn for each image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from safeforge.export.records import copy_images, image_name, meta, splits, turns


def record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["record_id"],
        "images": [image_name(row["image_path"])],
        "conversations": turns("<image>" + row["query"], row["guidance"]),
        **meta(row),
    }


def write(dataset: pl.DataFrame, images_root: Path, folder: Path, card: str | None) -> int:
    n_images = copy_images(dataset, images_root, folder)
    for split in splits(dataset):
        rows = dataset.filter(pl.col("split") == split).iter_rows(named=True)
        lines = [json.dumps(record(row), ensure_ascii=False) + "\n" for row in rows]
        (folder / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return n_images
