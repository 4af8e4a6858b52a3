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
    read_json_list,
    register_adapter,
    require_file,
    text_field,
)


@register_adapter("salad")
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    path = require_file(root, spec["annotations"], "SaLAD")
    for index, record in enumerate(read_json_list(path)):
        where = f"record {index}"
        label = str(field_of(record, "safety type", path, where)).strip().lower()
        if label not in LABELS:
            raise BenchmarkFormatError(
                path, where, f"'safety type' is {record['safety type']!r}, not safe or unsafe"
            )
        category = text_field(record, "category", path, where).strip()
        yield {
            "item_id": str(index),
            "image": join_image(spec["images"], text_field(record, "image", path, where)),
            "text": text_field(record, "query", path, where),
            "label": label,
            "subset": category,
            "source_category": category,
        }
