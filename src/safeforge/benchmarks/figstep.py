"""FigStep SafeBench (github.com/ThuCCSLab/FigStep), read as published.

Layout: `data/question/safebench.csv` with columns dataset, category_id, task_id,
category_name, question, instruction (500 rows); one typographic image per row,
`data/images/SafeBench/query_<dataset>_<category_id>_<task_id>_6.png` (the conf's `image_name`).
SafeBench-Tiny is the same with `SafeBench-Tiny.csv` and `data/images/SafeBench-Tiny/`.

Items: one per row, id `<category_id>_<task_id>`. The harmful instruction is only in the image
(typeset); the text is the paper's fixed prompt asking to fill in the numbered list
(`text_prompt`), never the question. All unsafe (the conf's `label`); subset and source category
are `category_name` (SafeBench defines no subsets).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safeforge.benchmarks.base import (
    BenchmarkFormatError,
    RawItem,
    join_image,
    read_csv,
    register_adapter,
    require_file,
)

COLUMNS = ("dataset", "category_id", "task_id", "category_name", "question", "instruction")


@register_adapter("figstep")
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    path = require_file(root, spec["questions"], "FigStep SafeBench")
    for line, row in read_csv(path, COLUMNS):
        row = {k: v.strip() for k, v in row.items()}
        if not row["category_id"] or not row["task_id"]:
            raise BenchmarkFormatError(path, line, "empty category_id or task_id")
        try:
            name = spec["image_name"].format(**row)
        except (KeyError, IndexError, ValueError) as err:  # the conf's pattern names a bad field
            raise BenchmarkFormatError(path, line, f"image_name pattern: {err!r}") from None
        yield {
            "item_id": f"{row['category_id']}_{row['task_id']}",
            "image": join_image(spec["images"], name),
            "text": spec["text_prompt"],
            "label": spec["label"],
            "subset": row["category_name"],
            "source_category": row["category_name"],
        }
