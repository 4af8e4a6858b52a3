"""Any benchmark whose annotation file is a list of records, read by the field names its conf
names (adapter `json_records`). Adding one is conf/benchmarks/<name>.yaml plus its taxonomy map
conf/taxonomy_maps/<name>.yaml: no code. SaLAD and SIUO are read this way.

The conf (every key is checked: an unknown, missing or ill-typed one is an error naming it):

    adapter: json_records
    title: SIUO                    # the benchmark's name in errors ("... is not a SIUO folder")
    version: sinwang20/SIUO@<commit>   # which release of the files the conf reads
    root: null                     # the folder, set per machine
    annotations: data/siuo_gen.json    # the annotation file, relative to the root
    format: json                   # json (one JSON list) | jsonl (one JSON object a line) |
                                   # detect (the default: a list when the file starts with "[")
    images: data/images            # the folder image fields are relative to (default "": root)
    id: {field: question_id}       # a string or integer field; or `index`, the record's
                                   # 0-based position in the file (records that carry no id)
    text: {field: question}        # a string field, as published; or {value: a fixed prompt}
    image: {field: image}          # a string field: the image's path under `images`
    label: unsafe                  # safe | unsafe for every item; or
                                   # {field: NAME, values: {native value: safe | unsafe}},
                                   # native values compared as text, stripped and lower-cased
    subset: {field: category}      # a string field (stripped), or {value: NAME}
    category: {field: category}    # the source category the taxonomy map reads: a string
                                   # field (stripped), {value: NAME}, or null/absent for none
    reference: [safety warning, safe suggestion]  # the item's reference note: the first of
                                   # these string fields a record has ("" when none; optional)
    categories: {...}              # the taxonomy map (defaults: /taxonomy_maps@categories)

Items: one per record, in file order. Fields are read in the order id, label, subset, category,
image, text; a malformed record names the file and "record N" (0-based, in a JSON list) or
"line N" (JSON Lines).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeforge.benchmarks.base import (
    COMMON_KEYS,
    LABELS,
    BenchmarkConfigError,
    BenchmarkFormatError,
    RawItem,
    field_of,
    join_image,
    read_json_lines,
    read_json_list,
    register_adapter,
    require_file,
    text_field,
)

ADAPTER = "json_records"
REQUIRED = ("title", "version", "annotations", "id", "text", "image", "label", "subset")
OPTIONAL = ("format", "images", "category", "reference")
FORMATS = ("json", "jsonl", "detect")
INDEX = "index"  # `id: index`: the record's position in the file


@dataclass(frozen=True)
class Rule:
    """A record field to read (`field`), or a constant (`value`) when `field` is None."""

    field: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class RecordsConf:
    title: str
    version: str
    annotations: str
    format: str
    images: str
    id_field: str | None  # None: the record's index
    text: Rule
    image_field: str
    label: Rule
    label_values: dict[str, str]  # native value (stripped, lower-cased) -> safe | unsafe
    subset: Rule
    category: Rule | None  # None: no source category
    reference_fields: tuple[str, ...]  # the first present string field is the item's reference


def _fail(where: str, key: str, why: str) -> BenchmarkConfigError:
    return BenchmarkConfigError(f"{where}.{key}: {why} (adapter {ADAPTER}; see records.py)")


def _string(spec: Mapping[str, Any], key: str, where: str) -> str:
    value = spec[key]
    if not isinstance(value, str) or not value:
        raise _fail(where, key, f"must be a non-empty string, not {value!r} (quote it in YAML)")
    return value


def _rule(
    spec: Mapping[str, Any], key: str, where: str, constant: bool = True, extra: tuple = ()
) -> Rule:
    """{field: NAME} or (where `constant`) {value: TEXT}; `extra` keys are the caller's."""
    rule = spec[key]
    forms = "{field: NAME}" + (" or {value: TEXT}" if constant else "")
    if not isinstance(rule, Mapping):
        raise _fail(where, key, f"must be {forms}, not {rule!r}")
    known = ("field", "value", *extra) if constant else ("field", *extra)
    unknown = sorted(map(str, set(rule) - set(known)))
    if unknown:
        raise _fail(where, key, f"unknown keys {unknown} (known: {list(known)})")
    if ("field" in rule) == ("value" in rule):
        raise _fail(where, key, f"must be {forms}: exactly one of them, not {dict(rule)!r}")
    name = "field" if "field" in rule else "value"
    if not isinstance(rule[name], str) or not rule[name]:
        raise _fail(where, f"{key}.{name}", f"must be a non-empty string, not {rule[name]!r}")
    return Rule(field=rule[name]) if name == "field" else Rule(value=rule[name])


def native(value: Any) -> str:
    """A label field's value as the label map compares it: text, stripped, lower-cased."""
    return str(value).strip().lower()


def _label(spec: Mapping[str, Any], where: str) -> tuple[Rule, dict[str, str]]:
    label = spec["label"]
    if isinstance(label, str):
        rule = Rule(value=label)
    else:
        rule = _rule(spec, "label", where, extra=("values",))
    if rule.value is not None:
        if rule.value not in LABELS:
            raise _fail(
                where,
                "label",
                f"must be safe, unsafe or {{field: NAME, values: {{...}}}}, not {label!r}",
            )
        if isinstance(label, Mapping) and "values" in label:
            raise _fail(where, "label.values", "only a label read from a field has values")
        return rule, {}
    values = label.get("values")
    if not isinstance(values, Mapping) or not values:
        raise _fail(
            where, "label.values", f"must map the field's values to safe or unsafe, not {values!r}"
        )
    mapping: dict[str, str] = {}
    for raw, target in values.items():
        if target not in LABELS:
            raise _fail(where, f"label.values.{raw}", f"must be safe or unsafe, not {target!r}")
        key = native(raw)
        if mapping.get(key, target) != target:
            raise _fail(where, "label.values", f"{key!r} maps to both safe and unsafe")
        mapping[key] = target
    return rule, mapping


def parse_conf(spec: Mapping[str, Any], where: str) -> RecordsConf:
    """The conf entry checked and read; `where` is its params key, e.g. benchmarks.siuo."""
    known = (*COMMON_KEYS, *REQUIRED, *OPTIONAL)
    for key in spec:
        if key not in known:
            raise _fail(where, str(key), f"not a key of this adapter (known: {sorted(known)})")
    for key in REQUIRED:
        if key not in spec:
            raise _fail(where, key, f"missing (required: {list(REQUIRED)})")
    fmt = spec.get("format", "detect")
    if fmt not in FORMATS:
        raise _fail(where, "format", f"must be one of {list(FORMATS)}, not {fmt!r}")
    images = spec.get("images") or ""
    if not isinstance(images, str):
        raise _fail(where, "images", f"must be a folder relative to the root, not {images!r}")
    if spec["id"] == INDEX:
        id_field = None
    elif isinstance(spec["id"], Mapping):
        id_field = _rule(spec, "id", where, constant=False).field
    else:
        raise _fail(where, "id", f"must be {{field: NAME}} or {INDEX!r}, not {spec['id']!r}")
    label, label_values = _label(spec, where)
    category = spec.get("category")
    reference = spec.get("reference") or []
    if isinstance(reference, str) or not all(isinstance(f, str) and f for f in reference):
        raise _fail(where, "reference", f"must be a list of field names, not {reference!r}")
    return RecordsConf(
        title=_string(spec, "title", where),
        version=_string(spec, "version", where),
        annotations=_string(spec, "annotations", where),
        format=fmt,
        images=images,
        id_field=id_field,
        text=_rule(spec, "text", where),
        image_field=str(_rule(spec, "image", where, constant=False).field),
        label=label,
        label_values=label_values,
        subset=_rule(spec, "subset", where),
        category=None if category is None else _rule(spec, "category", where),
        reference_fields=tuple(reference),
    )


def check(spec: Mapping[str, Any], where: str) -> None:
    parse_conf(spec, where)


def _first_byte(path: Path) -> bytes:
    """The file's first byte that is not whitespace (b"" when none): a JSON list opens with [.
    Read in small pieces, so a large annotation file is not read twice."""
    with open(path, "rb") as f:
        while chunk := f.read(4096):
            if head := chunk.lstrip():
                return head[:1]
    return b""


def _records(path: Path, fmt: str) -> Iterator[tuple[str | int, int, Any]]:
    """(where, index, record) in file order: where is "record N" in a list, the line number in
    JSON Lines; index counts records from 0."""
    if fmt == "detect":
        fmt = "json" if _first_byte(path) == b"[" else "jsonl"
    if fmt == "json":
        for index, record in enumerate(read_json_list(path)):
            yield f"record {index}", index, record
    else:
        for index, (line, record) in enumerate(read_json_lines(path)):
            yield line, index, record


def _item_id(conf: RecordsConf, record: Any, index: int, path: Path, where: str | int) -> str:
    if conf.id_field is None:
        return str(index)
    value = field_of(record, conf.id_field, path, where)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BenchmarkFormatError(path, where, f"{conf.id_field} is {value!r}")
    return str(value)


def _label_of(conf: RecordsConf, record: Any, path: Path, where: str | int) -> str:
    if conf.label.field is None:
        return str(conf.label.value)
    value = field_of(record, conf.label.field, path, where)
    label = conf.label_values.get(native(value))
    if label is None:
        known = sorted(conf.label_values)
        why = (
            "not safe or unsafe"
            if conf.label_values == {x: x for x in LABELS}
            else f"not a key of the conf's label.values {known}"
        )
        raise BenchmarkFormatError(path, where, f"{conf.label.field!r} is {value!r}, {why}")
    return label


def _name(rule: Rule, record: Any, path: Path, where: str | int) -> str:
    """A subset or category: the field's string, stripped, or the constant."""
    if rule.field is None:
        return str(rule.value)
    return text_field(record, rule.field, path, where).strip()


@register_adapter(ADAPTER, check=check)
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    conf = parse_conf(spec, f"{ADAPTER} conf")
    path = require_file(root, conf.annotations, conf.title)
    for where, index, record in _records(path, conf.format):
        item_id = _item_id(conf, record, index, path, where)
        label = _label_of(conf, record, path, where)
        subset = _name(conf.subset, record, path, where)
        category = "" if conf.category is None else _name(conf.category, record, path, where)
        image = text_field(record, conf.image_field, path, where)
        if conf.text.field is None:
            text = str(conf.text.value)
        else:
            text = text_field(record, conf.text.field, path, where)
        yield {
            "item_id": item_id,
            "image": join_image(conf.images, image),
            "text": text,
            "label": label,
            "subset": subset,
            "source_category": category,
            "reference": _reference(conf, record),
        }


def _reference(conf: RecordsConf, record: Any) -> str:
    for name in conf.reference_fields:
        value = record.get(name) if isinstance(record, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""
