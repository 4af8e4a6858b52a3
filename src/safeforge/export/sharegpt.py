"""ShareGPT layout as LLaMA-Factory reads multimodal data: one JSONL per split, an images list
per record and an '<image>' token in the human turn for each image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from safeforge.export.records import image_name, meta, turns, write_conversations


def record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["record_id"],
        "images": [image_name(row["image_path"])],
        "conversations": turns("<image>" + row["query"], row["guidance"]),
        **meta(row),
    }


def write(dataset: pl.DataFrame, images_root: Path, folder: Path, card: str | None) -> int:
    return write_conversations(dataset, images_root, folder, card, record, lines=True)
