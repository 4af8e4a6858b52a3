"""SaLAD (github.com/xinyuelou/SaLAD; full set Holly301/SaLAD), read as published.

Layout: `data/data.json`, a JSON list of records with `query`, `category`, `image` (a file name
in the images folder), `safety type` (with a space: "safe" or "unsafe") and the reference
`safety warning` / `safe suggestion`.

Items: one per record, its id the record's index in the list (the records carry no id); the
label is `safety type`; subset and source category are `category` (SaLAD defines no subsets).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safeforge.benchmarks.base import (
    LABELS,
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


@register_adapter("salad")
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    path = require_file(root, spec["annotations"], "SaLAD")
    records = read_json(path)
    if not isinstance(records, list):
        raise BenchmarkFormatError(
            path, None, f"expected a JSON list, got {type(records).__name__}"
        )
    for index, record in enumerate(records):
        where = f"record {index}"
        label = str(field_of(record, "safety type", path, where)).strip().lower()
        if label not in LABELS:
            raise BenchmarkFormatError(
                path, where, f"'safety type' is {record['safety type']!r}, not safe or unsafe"
            )
        category = _text(record, "category", path, where).strip()
        yield {
            "item_id": str(index),
            "image": join_image(spec["images"], _text(record, "image", path, where)),
            "text": _text(record, "query", path, where),
            "label": label,
            "subset": category,
            "source_category": category,
        }
