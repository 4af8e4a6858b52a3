"""VLGuard test set (github.com/ys-zong/VLGuard; images in the ys-zong/VLGuard dataset, test.zip).

Native layout: spec["annotations"] (`data/test.json`) is a JSON list of
`{id, image, safe, harmful_category, harmful_subcategory, instr-resp}`; `image` is relative to
the unzipped images folder, spec["images"] (VLGuard_eval.py's --imageDir).

Items are the paper's three test sets, as the authors' utils/utils.py `load_data` builds them:
an unsafe image (`safe` false) gives one item from its `instruction` (`<id>:unsafes`, subset
`unsafes`); a safe image gives two, from its `safe_instruction` (`<id>:safe_safes`) and its
`unsafe_instruction` (`<id>:safe_unsafes`). Labels come from spec["subsets"] (subset -> label).
The source category is `harmful_category`, plus `/harmful_subcategory` when there is one, so
the taxonomy map can prefer the finer key; "" when the record has none (the published safe
images). Malformed records name "record N" (0-based index in the list) and the record's id.
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

# (subset, the instr-resp key that holds its instruction), by whether the image is safe
_ITEMS_BY_IMAGE = {
    False: (("unsafes", "instruction"),),
    True: (("safe_safes", "safe_instruction"), ("safe_unsafes", "unsafe_instruction")),
}


def _source_category(record: Mapping[str, Any]) -> str:
    category = record.get("harmful_category") or ""
    sub = record.get("harmful_subcategory") or ""
    if not category:
        return ""  # a subcategory alone matches no map key (keys start with the category)
    return f"{category}/{sub}" if sub else str(category)


def _instruction(pairs: list[Any], key: str) -> str | None:
    # by key, not position, as load_data does for safe images (`next(q[key] ... if key in q)`)
    return next((p[key] for p in pairs if isinstance(p, Mapping) and key in p), None)


@register_adapter("vlguard")
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    path = require_file(root, spec["annotations"], "VLGuard")
    records = read_json_list(path)
    labels: Mapping[str, str] = spec["subsets"]
    for n, record in enumerate(records):
        where = f"record {n}"
        rid = field_of(record, "id", path, where)
        image = text_field(record, "image", path, where)
        safe = field_of(record, "safe", path, where)
        pairs = field_of(record, "instr-resp", path, where)
        if not isinstance(safe, bool):
            raise BenchmarkFormatError(path, where, f"id {rid!r}: `safe` is {safe!r}, not a bool")
        if not isinstance(pairs, list):
            raise BenchmarkFormatError(path, where, f"id {rid!r}: `instr-resp` is not a list")
        category = _source_category(record)  # absent on safe images in the published file
        for subset, key in _ITEMS_BY_IMAGE[safe]:
            text = _instruction(pairs, key)
            if not isinstance(text, str):
                raise BenchmarkFormatError(
                    path, where, f"id {rid!r}: instr-resp has no {key!r} string"
                )
            yield RawItem(
                item_id=f"{rid}:{subset}",
                image=join_image(spec["images"], image),
                text=text,
                label=labels[subset],
                subset=subset,
                source_category=category,
            )
