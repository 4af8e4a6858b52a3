"""Export the split dataset in the layouts trainers read: Hugging Face datasets, LLaVA and
ShareGPT. Every row is kept (unsafe, benign and contrast) with its split, label and category."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from safeforge.export import hf, llava, sharegpt
from safeforge.export.records import check_rows, splits, staging

FORMATS = ("hf", "llava", "sharegpt")
WRITERS = {"hf": hf.write, "llava": llava.write, "sharegpt": sharegpt.write}


def export_dataset(
    dataset: pl.DataFrame,
    images_root: Path,
    out: Path,
    fmt: str,
    card: str | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write `dataset` to `out` in `fmt`, all or nothing: every check runs before the first
    write, and the export appears at `out` only once complete."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    images_root, out = Path(images_root), Path(out)
    check_rows(dataset, images_root)
    with staging(out, overwrite) as folder:
        n_images = WRITERS[fmt](dataset, images_root, folder, card)
    counts = dict(dataset.group_by("split").len().iter_rows())
    rows = {split: counts[split] for split in splits(dataset)}
    return {"format": fmt, "out": str(out), "rows": rows, "images": n_images}
