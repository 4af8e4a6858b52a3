"""What every export format shares: checking the rows' images, copying them, and the staging
folder that turns a crashed export into no export rather than half of one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

# the columns a format reads; the rest ride along untouched
REQUIRED = ("record_id", "image_path", "query", "guidance", "label", "category", "query_type")
META = ("label", "category", "query_type", "scenario", "split")
SPLIT_ORDER = ("train", "val", "test")


def check_rows(dataset: pl.DataFrame, images_root: Path) -> None:
    """Fail before writing anything: a bad image found halfway would waste the export so far."""
    missing = [c for c in (*REQUIRED, *META) if c not in dataset.columns]
    if missing:
        raise ValueError(f"dataset lacks the columns {missing}")
    bad = []
    for rel, ids in (
        dataset.group_by("image_path", maintain_order=True).agg("record_id").iter_rows()
    ):
        if problem := _image_problem(images_root / rel):
            others = f" and {len(ids) - 1} more records" if len(ids) > 1 else ""
            bad.append(f"record {ids[0]}{others}: image {images_root / rel} {problem}")
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ValueError("; ".join(bad[:3]) + more)


def _image_problem(path: Path) -> str | None:
    if not path.is_file():
        return "is missing"
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as err:  # PIL raises all three
        return f"is unreadable ({err})"
    return None


def splits(dataset: pl.DataFrame) -> list[str]:
    """train, val, test first, whatever order the rows come in, so reruns list them alike."""
    rank = {name: i for i, name in enumerate(SPLIT_ORDER)}
    return sorted(dataset["split"].unique(), key=lambda s: (rank.get(s, len(rank)), s))


def image_name(image_path: str) -> str:
    """Image files are named by content hash, so the basename is already a unique, stable key."""
    return "images/" + Path(image_path).name


def copy_images(dataset: pl.DataFrame, images_root: Path, folder: Path) -> int:
    """Copy each distinct image once, however many records (unsafe, benign, contrast) share it."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = dataset["image_path"].unique(maintain_order=True).to_list()
    for rel in tqdm(paths, desc="copy images", unit="img"):
        shutil.copyfile(images_root / rel, folder / image_name(rel))
    return len(paths)


def write_conversations(
    dataset: pl.DataFrame,
    images_root: Path,
    folder: Path,
    card: str | None,
    record: Callable[[dict[str, Any]], dict[str, Any]],
    lines: bool,
) -> int:
    """The images once, then each split's records: a JSON list (`<split>.json`) or JSON Lines
    (`<split>.jsonl`); the card, when there is one, as README.md."""
    n_images = copy_images(dataset, images_root, folder)
    for split in splits(dataset):
        rows = [record(r) for r in dataset.filter(pl.col("split") == split).iter_rows(named=True)]
        if lines:
            name, text = (
                f"{split}.jsonl",
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
            )
        else:
            name, text = f"{split}.json", json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
        (folder / name).write_text(text, encoding="utf-8")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")
    return n_images


def turns(human: str, gpt: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


def meta(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the safety labels beside each conversation so a trainer can filter or weight them."""
    return {key: row[key] for key in META}


@contextlib.contextmanager
def staging(out: Path, overwrite: bool) -> Iterator[Path]:
    """Build the export in a sibling temp folder and rename it into place only when complete."""
    if _occupied(out) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # a stale one from a killed run with our pid
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _occupied(out: Path) -> bool:
    return out.is_file() or out.is_symlink() or (out.is_dir() and any(out.iterdir()))


def _swap_in(tmp: Path, out: Path) -> None:
    """os.replace cannot land on a non-empty folder: move the old export aside first."""
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    if _occupied(out):
        os.replace(out, old)
    elif out.is_dir():
        out.rmdir()
    os.replace(tmp, out)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink(missing_ok=True)
