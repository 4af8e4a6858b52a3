"""SIUO (github.com/sinwang20/SIUO), read as published.

Layout: `data/siuo_gen.json`, a JSON list of records with `question_id`, `image` (a file name
in `data/images/`), `question`, `category`, `safety_warning` and `reference_answer`.

Items: one per record, its id `question_id`. Every item is unsafe (a safe image and a safe
question that are unsafe together), so the label is the conf's `label`; subset and source
category are `category` (SIUO defines no subsets).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safeforge.benchmarks.base import (
    BenchmarkFormatError,
    RawItem,
    field_of,
    join_image,
    read_json,
    register_adapter,
    require_file,
)


def _text(record: Any, key: str, path: Path, where: str) -> str:
    value = field_of(record, key, path, where)
    if not isinstance(value, str):  # a null or a number here is a broken record, not text
        raise BenchmarkFormatError(path, where, f"field {key!r} is {value!r}, not text")
    return value


@register_adapter("siuo")
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    path = require_file(root, spec["annotations"], "SIUO")
    records = read_json(path)
    if not isinstance(records, list):
        raise BenchmarkFormatError(
            path, None, f"expected a JSON list, got {type(records).__name__}"
        )
    for index, record in enumerate(records):
        where = f"record {index}"
        question_id = field_of(record, "question_id", path, where)
        if isinstance(question_id, bool) or not isinstance(question_id, (int, str)):
            raise BenchmarkFormatError(path, where, f"question_id is {question_id!r}")
        category = _text(record, "category", path, where).strip()
        yield {
            "item_id": str(question_id),
            "image": join_image(spec["images"], _text(record, "image", path, where)),
            "text": _text(record, "question", path, where),
            "label": spec["label"],
            "subset": category,
            "source_category": category,
        }
