"""Reading a benchmark as its authors publish it into the common item table.

An adapter (one module per format, registered with `@register_adapter`) turns the native files
under a root folder into raw items. The package's __init__ imports every adapter module, so the
registry is full whenever this module can be imported (Python runs the package first); this
module imports no other project module but the core's (config, labels). Any benchmark whose annotation file is a list of
records needs no module: the `json_records` adapter (records.py) reads it by the field names
its conf names. Everything every benchmark needs is done once, here:
image paths are resolved inside the root (absolute paths, `..` and links out of it are refused),
missing and unreadable images are counted as refusals (never a crash), source categories map to
the project taxonomy, and an empty benchmark is an error rather than a score of 0.
"""

from __future__ import annotations

import csv
import json
import logging
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import polars as pl
from PIL import Image

from safeforge.config import OWN_TEST
from safeforge.labels import LABELS

log = logging.getLogger(__name__)

ITEM_SCHEMA = {
    "item_id": pl.String,
    "image_path": pl.String,  # absolute, inside the root
    "text": pl.String,
    "label": pl.String,  # safe | unsafe
    "subset": pl.String,
    "category": pl.String,  # project taxonomy, "unspecified" or "unmapped"
    "source_category": pl.String,  # the benchmark's own category, "" when it has none
    # what the authors say of the item (SaLAD's safety warning, SIUO's), "" when nothing: a
    # reply's rater checks that it warns of this same risk (stage evaluate)
    "reference": pl.String,
}
REFUSED_SCHEMA = {"item_id": pl.String, "image": pl.String, "reason": pl.String}
UNSPECIFIED, UNMAPPED = "unspecified", "unmapped"
# keys every conf/benchmarks/<name>.yaml may hold whatever its adapter: `version` says which
# release of the benchmark's files the conf reads (e.g. repo@commit); `categories` is its map
# into the project taxonomy (conf/taxonomy_maps/<name>.yaml)
COMMON_KEYS = ("adapter", "root", "version", "categories")


class BenchmarkError(ValueError):
    """The folder is not (a readable copy of) the benchmark it was named as."""


class BenchmarkConfigError(BenchmarkError):
    """A benchmark's conf entry (conf/benchmarks/<name>.yaml) is wrong; names the key."""


class BenchmarkFormatError(BenchmarkError):
    """A native file is malformed; names the file and the line (or record) and why."""

    def __init__(self, path: Path | str, where: str | int | None, reason: str) -> None:
        self.path, self.where, self.reason = str(path), where, reason
        at = f"line {where}" if isinstance(where, int) else (where or "")
        super().__init__(f"{path}{': ' + at if at else ''}: {reason}")


class RawItem(TypedDict):
    item_id: str
    image: str | None  # path relative to the root as published; None when there is none
    text: str
    label: str
    subset: str
    source_category: str
    reference: NotRequired[str]  # the authors' note on the item's risk; absent: ""


ReadFn = Callable[[Path, Mapping[str, Any]], Iterable[RawItem]]
OfficialFn = Callable[[pl.DataFrame, Mapping[str, Any]], dict[str, Any]]
# checks a conf entry before reading, raising BenchmarkConfigError that names `where`.key
CheckFn = Callable[[Mapping[str, Any], str], None]


@dataclass(frozen=True)
class Adapter:
    name: str
    read: ReadFn
    # the benchmark's own headline metrics from a predictions table, where it defines any
    official: OfficialFn | None = None
    check: CheckFn | None = None


# filled by the adapter modules, which the package's __init__ imports (by name, not by search)
ADAPTERS: dict[str, Adapter] = {}


def register_adapter(
    name: str, official: OfficialFn | None = None, check: CheckFn | None = None
) -> Callable[[ReadFn], ReadFn]:
    def wrap(read: ReadFn) -> ReadFn:
        ADAPTERS[name] = Adapter(name, read, official, check)
        return read

    return wrap


def get_adapter(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise KeyError(f"unknown benchmark adapter {name!r}; known: {sorted(ADAPTERS)}")
    return ADAPTERS[name]


# ---- reading native files with errors that name the file and line --------------------------
def require_file(root: Path, relative: str, benchmark: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise BenchmarkError(
            f"{root} is not a {benchmark} folder: {relative} is missing "
            f"(set the file name in conf/benchmarks/ if your copy differs)"
        )
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BenchmarkFormatError(path, err.lineno, f"not valid JSON ({err.msg})") from None
    except UnicodeDecodeError as err:
        raise BenchmarkFormatError(path, None, f"not UTF-8 text ({err})") from None


def read_csv(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; a missing column or ragged row names the line."""
    # utf-8-sig: spreadsheet exports often start with a byte-order mark
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        try:
            missing = sorted(set(required) - set(reader.fieldnames or []))
            if missing:
                raise BenchmarkFormatError(path, 1, f"header lacks columns {missing}")
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise BenchmarkFormatError(path, reader.line_num, "wrong number of fields")
                yield reader.line_num, row
        except UnicodeDecodeError as err:
            raise BenchmarkFormatError(
                path, reader.line_num + 1, f"not UTF-8 text ({err})"
            ) from None


def field_of(record: Mapping[str, Any], key: str, path: Path, where: str | int) -> Any:
    if not isinstance(record, Mapping) or key not in record:
        raise BenchmarkFormatError(path, where, f"record lacks field {key!r}")
    return record[key]


def text_field(record: Mapping[str, Any], key: str, path: Path, where: str | int) -> str:
    """A field that must be a string: a null or a number there is a broken record, not text."""
    value = field_of(record, key, path, where)
    if not isinstance(value, str):
        raise BenchmarkFormatError(path, where, f"field {key!r} is {value!r}, not a string")
    return value


def read_json_list(path: Path) -> list[Any]:
    records = read_json(path)
    if not isinstance(records, list):
        raise BenchmarkFormatError(
            path, None, f"expected a JSON list, got {type(records).__name__}"
        )
    return records


def read_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON Lines file; a line that is not
    JSON (or not UTF-8) names its number. Only a newline ends a line (JSON Lines)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BenchmarkFormatError(path, number, f"not UTF-8 text ({err})") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise BenchmarkFormatError(path, number, f"not valid JSON ({err.msg})") from None
            yield number, value


# ---- images ----------------------------------------------------------------------------------
def resolve_image(root: Path, relative: str | None) -> tuple[Path | None, str | None]:
    """The image's real path inside `root`, or (None, refusal reason)."""
    if not relative:
        return None, "no_image"
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        return None, "path_escapes_root"
    path = root / relative
    if not path.exists() and not path.is_symlink():
        return None, "missing_image"
    real, real_root = path.resolve(), root.resolve()
    if not real.is_relative_to(real_root):
        return None, "path_escapes_root"  # a link that leads out of the root
    if not real.is_file():
        return None, "missing_image"
    return real, None


def image_readable(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # PIL raises many types for broken files; all mean "unreadable"
        return False


# ---- the loaded benchmark --------------------------------------------------------------------
@dataclass
class BenchmarkTable:
    name: str
    root: Path
    items: pl.DataFrame  # ITEM_SCHEMA, only rows that can be scored
    refused: pl.DataFrame  # REFUSED_SCHEMA: item_id, image as published, reason
    unmapped: dict[str, int] = field(default_factory=dict)  # source category -> items
    adapter: str | None = None  # the adapter that read it; None for the own test split
    version: str | None = None  # the conf's `version`: which release of the files it reads

    def summary(self) -> dict[str, Any]:
        def counts(df: pl.DataFrame, col: str) -> dict[str, int]:
            return {str(k): int(n) for k, n in df.group_by(col).len().sort(col).iter_rows()}

        return {
            "benchmark": self.name,
            "version": self.version,
            "root": str(self.root),
            "items": self.items.height,
            "refused": self.refused.height,
            "by_label": counts(self.items, "label"),
            "by_subset": counts(self.items, "subset"),
            "by_category": counts(self.items, "category"),
            "refused_by_reason": counts(self.refused, "reason"),
            "unmapped_source_categories": dict(sorted(self.unmapped.items())),
        }


def split_as_benchmark(
    dataset: pl.DataFrame, split: str, version: str | None, reference: bool = False
) -> BenchmarkTable:
    """A split of the dataset (data/split/dataset.parquet) as a benchmark, own_test's items:
    subset is the query type (unsafe, benign, contrast). With `reference`, each record's
    guidance is the item's reference: the risk a model's warning should name."""
    items = dataset.filter(pl.col("split") == split).select(
        pl.col("record_id").alias("item_id"),
        "image_path",
        pl.col("query").alias("text"),
        "label",
        pl.col("query_type").alias("subset"),
        "category",
        *([pl.col("guidance").alias("reference")] if reference else []),
    )
    return BenchmarkTable(
        OWN_TEST, Path("data/split"), items, pl.DataFrame(schema=REFUSED_SCHEMA), version=version
    )


def category_mapper(
    category_map: Mapping[str, str], taxonomy: Iterable[str] | None = None
) -> Callable[[str], str]:
    """source category -> project category; case-insensitive, exact key first, then the part
    before "/" (category/subcategory). Map values outside `taxonomy` are a config error."""
    folded = {str(k).casefold(): str(v) for k, v in (category_map or {}).items()}
    if taxonomy is not None:
        allowed = {*taxonomy, UNSPECIFIED}
        bad = sorted({v for v in folded.values() if v not in allowed})
        if bad:
            raise KeyError(
                f"taxonomy map targets {bad} are not project categories {sorted(allowed)}"
            )

    def lookup(source: str) -> str:
        if not source:
            return folded.get("", UNSPECIFIED)
        key = source.casefold()
        for k in (key, key.split("/", 1)[0]):
            if k in folded:
                return folded[k]
        return UNMAPPED

    return lookup


def load_benchmark(
    name: str,
    spec: Mapping[str, Any],
    root: str | Path | None = None,
    taxonomy: Iterable[str] | None = None,
    verify_images: bool = True,
) -> BenchmarkTable:
    """Read benchmark `name` (its conf/benchmarks/ entry, `spec`) from `root` or spec's root.

    spec["categories"] maps its categories to the project taxonomy (conf/taxonomy_maps/);
    `taxonomy`, the project's category keys, checks that map."""
    root = root if root is not None else spec.get("root")
    if not root:
        raise BenchmarkError(
            f"benchmark {name!r}: no root folder; set benchmarks.{name}.root "
            f"(e.g. `dvc exp run -S benchmarks.{name}.root=/data/{name}`) or pass --root"
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchmarkError(f"benchmark {name!r}: root {root} is not a folder")
    adapter = get_adapter(spec["adapter"])
    if adapter.check is not None:
        adapter.check(spec, f"benchmarks.{name}")
    to_category = category_mapper(spec.get("categories") or {}, taxonomy)
    rows: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    unmapped: dict[str, int] = {}
    seen: set[str] = set()
    for raw in adapter.read(root, spec):
        item_id = str(raw["item_id"])
        if item_id in seen:
            raise BenchmarkError(f"benchmark {name!r} in {root}: item id {item_id!r} repeats")
        seen.add(item_id)
        if raw["label"] not in LABELS:
            raise ValueError(f"adapter {adapter.name}: item {item_id} has label {raw['label']!r}")
        path, reason = resolve_image(root, raw["image"])
        if path is not None and verify_images and not image_readable(path):
            path, reason = None, "unreadable_image"
        if path is None:
            refused.append({"item_id": item_id, "image": raw["image"] or "", "reason": reason})
            continue
        source = raw["source_category"] or ""
        category = to_category(source)
        if category == UNMAPPED:
            unmapped[source] = unmapped.get(source, 0) + 1
        rows.append(
            {
                "item_id": item_id,
                "image_path": str(path),
                "text": raw["text"],
                "label": raw["label"],
                "subset": raw["subset"],
                "category": category,
                "source_category": source,
                "reference": raw.get("reference") or "",
            }
        )
    if not seen:
        raise BenchmarkError(f"benchmark {name!r} in {root}: no items (an empty benchmark)")
    table = BenchmarkTable(
        name,
        root,
        pl.DataFrame(rows, schema=ITEM_SCHEMA),
        pl.DataFrame(refused, schema=REFUSED_SCHEMA),
        unmapped,
        adapter.name,
        None if spec.get("version") is None else str(spec["version"]),
    )
    if refused:
        log.warning("%s: refused %s", name, dict(Counter(r["reason"] for r in refused)))
    if unmapped:
        log.warning("%s: source categories not in the taxonomy map: %s", name, unmapped)
    return table


def join_image(folder: str, name: str) -> str:
    """`folder/name` as a relative posix path; an absolute `name` stays absolute (and is refused)."""
    return posixpath.join(folder, name) if folder else name
