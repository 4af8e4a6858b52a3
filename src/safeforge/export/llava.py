"""LLaVA's instruction-tuning layout: an images/ folder and one JSON list per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from safeforge.export.records import image_name, meta, turns, write_conversations


def record(row: dict[str, Any]) -> dict[str, Any]:
    """LLaVA marks where the image goes with an '<image>' line before the question."""
    return {
        "id": row["record_id"],
        "image": image_name(row["image_path"]),
        "conversations": turns("<image>\n" + row["query"], row["guidance"]),
        **meta(row),
    }


def write(dataset: pl.DataFrame, images_root: Path, folder: Path, card: str | None) -> int:
    return write_conversations(dataset, images_root, folder, card, record, lines=False)
