"""MSSBench, multimodal situational safety (github.com/eric-ai-lab/MSSBench; data kzhou35/mssbench).

Native layout: spec["annotations"] (`combine.json`) is `{"chat": [...], "embodied": [...]}`.
Chat entries hold `safe_image_path`, `unsafe_image_path`, `Type` and `queries` (a list); embodied
entries hold `category`, `safe_instructions`/`unsafe_instructions` (lists; some entries have the
singular `safe_instruction`/`unsafe_instruction` strings instead) and `safe`/`unsafe` (image
paths). Image paths are relative to spec["images"]["chat"] / spec["images"]["embodied"].

Items follow the authors' utils/infer_on_data.py (default, non-"ic" setting): every chat query runs
with the safe and with the unsafe image; embodied instructions pair up as
`zip(safe_instructions, unsafe_instructions)`, the safe one with the safe image and the unsafe one
with the unsafe image. The image decides the label (spec["labels"]: safe_image / unsafe_image);
subset is "chat" or "embodied"; the source category is chat `Type` / embodied `category` ("" when
absent: inference never reads it, so such an entry still scores, as "unspecified").
Item ids: `<chat|embodied>:<entry index>:<query or pair index>:<safe_image|unsafe_image>`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safeforge.benchmarks.base import (
    BenchmarkError,
    BenchmarkFormatError,
    RawItem,
    join_image,
    read_json,
    register_adapter,
    require_file,
    text_field,
)

log = logging.getLogger(__name__)
PARTS = ("chat", "embodied")
Run = tuple[str, str, list[tuple[str, str]]]  # safe image, unsafe image, text pairs


def _strings(entry: Mapping[str, Any], keys: tuple[str, ...], path: Path, where: str) -> list[str]:
    """The first of `keys` present, as a list: a list of strings, or one string."""
    key = next((k for k in keys if isinstance(entry, Mapping) and k in entry), None)
    if key is None:
        raise BenchmarkFormatError(
            path, where, f"record lacks field {' or '.join(map(repr, keys))}"
        )
    value = entry[key]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BenchmarkFormatError(path, where, f"{key!r} is not a string or a list of strings")
    return values


def _category(entry: Mapping[str, Any], key: str) -> str:
    # inference never reads it, so an entry without one still scores (as "unspecified")
    value = entry.get(key)
    return str(value) if value else ""


def _runs(data: Mapping[str, Any], path: Path) -> Iterator[tuple[str, int, Run, str]]:
    """(part, entry index, (safe image, unsafe image, [(safe text, unsafe text), ...]), category)
    for each entry, as infer_on_data.py pairs them."""
    for i, entry in enumerate(data["chat"]):
        where = f"chat record {i}"
        images = (
            text_field(entry, "safe_image_path", path, where),
            text_field(entry, "unsafe_image_path", path, where),
        )
        queries = _strings(entry, ("queries",), path, where)
        yield "chat", i, (*images, [(q, q) for q in queries]), _category(entry, "Type")

    for i, entry in enumerate(data["embodied"]):
        where = f"embodied record {i}"
        images = (text_field(entry, "safe", path, where), text_field(entry, "unsafe", path, where))
        safe = _strings(entry, ("safe_instructions", "safe_instruction"), path, where)
        unsafe = _strings(entry, ("unsafe_instructions", "unsafe_instruction"), path, where)
        if len(safe) != len(unsafe):
            # the authors' zip() drops the unpaired tail: keep their item count, but say so
            log.warning(
                "%s: %s has %d safe and %d unsafe instructions; reading %d pairs",
                path,
                where,
                len(safe),
                len(unsafe),
                min(len(safe), len(unsafe)),
            )
        pairs = list(zip(safe, unsafe, strict=False))
        yield "embodied", i, (*images, pairs), _category(entry, "category")


@register_adapter("mssbench")
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    path = require_file(root, spec["annotations"], "MSSBench")
    data = read_json(path)
    missing = [p for p in PARTS if not isinstance(data, Mapping) or p not in data]
    if missing:
        raise BenchmarkError(f"{path} is not MSSBench's combine.json: it has no {missing} key(s)")
    for part in PARTS:
        if not isinstance(data[part], list):
            raise BenchmarkFormatError(path, None, f"{part!r} is not a list of entries")
    folders: Mapping[str, str] = spec["images"]
    labels: Mapping[str, str] = spec["labels"]
    for part, i, (safe_image, unsafe_image, pairs), category in _runs(data, path):
        for j, (safe_text, unsafe_text) in enumerate(pairs):
            for kind, image, text in (
                ("safe_image", safe_image, safe_text),
                ("unsafe_image", unsafe_image, unsafe_text),
            ):
                yield RawItem(
                    item_id=f"{part}:{i}:{j}:{kind}",
                    image=join_image(folders[part], image),
                    text=text,
                    label=labels[kind],
                    subset=part,
                    source_category=category,
                )
