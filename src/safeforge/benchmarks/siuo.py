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
    read_json_list,
    register_adapter,
    require_file,
    text_field,
)


@register_adapter("siuo")
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    path = require_file(root, spec["annotations"], "SIUO")
    for index, record in enumerate(read_json_list(path)):
        where = f"record {index}"
        question_id = field_of(record, "question_id", path, where)
        if isinstance(question_id, bool) or not isinstance(question_id, (int, str)):
            raise BenchmarkFormatError(path, where, f"question_id is {question_id!r}")
        category = text_field(record, "category", path, where).strip()
        yield {
            "item_id": str(question_id),
            "image": join_image(spec["images"], text_field(record, "image", path, where)),
            "text": text_field(record, "question", path, where),
            "label": spec["label"],
            "subset": category,
            "source_category": category,
        }
