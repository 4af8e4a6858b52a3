"""Schema checks for every artifact, with Great Expectations.

Each artifact has a suite in `schemas/<suite>.json`: a Great Expectations 1.x
ExpectationSuite serialised as JSON (`{"name", "expectations": [{"type", "kwargs"}], "meta"}`),
so the suites can be read, diffed and reviewed like any other code. `validate` runs one suite
over a polars frame and raises `SchemaViolation` naming every failed expectation, its column
and a few offending values; stages call it on what they are about to write.

Great Expectations is imported lazily (it costs ~2 s); its ephemeral context, pandas
datasource, dataframe asset and whole-dataframe batch definition are built once per process,
and each suite once per name (and schemas folder), bound to that batch definition by a
ValidationDefinition, whose `run` loads (and fingerprints) the batch once; `Batch.validate`
would load it twice. Progress bars are off in the context config (`progress_bars`), and
analytics are off both by `GX_ANALYTICS_ENABLED=false` and by `analytics_enabled=False`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    import pandas as pd

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"  # the repository's schemas/

SUITES: tuple[str, ...] = (
    "images",
    "descriptions",
    "records",
    "features",
    "image_features",
    "kept",
    "splits",
    "variants",
    "predictions",
    "responses",
)

MAX_EXAMPLES = 5  # unexpected values shown per failed expectation
CHUNK_ROWS = 200_000  # larger frames are validated a chunk at a time (memory, see validate)
_MAX_VALUE_CHARS = 80  # one example value is cut to this many characters in the message


class SchemaViolation(ValueError):
    """A frame does not meet its suite; the message lists every failed expectation."""

    def __init__(self, message: str, failures: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


class _Gx:
    """The per-process Great Expectations objects: context, datasource, batch definition."""

    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.gx = gx
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        source = self.context.data_sources.add_pandas("safeforge")
        asset = source.add_dataframe_asset("frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        # (schemas dir, suite) -> ValidationDefinition binding the suite to the batch definition
        self.definitions: dict[tuple[str, str], Any] = {}

    def definition(self, suite: str, schemas_dir: Path) -> Any:
        """The ValidationDefinition for a suite, built the first time the suite is used."""
        key = (str(Path(schemas_dir).resolve()), suite)
        found = self.definitions.get(key)
        if found is not None:
            return found
        data = load_suite_json(suite, schemas_dir)
        n = len(data["expectations"])
        # Suite names are unique in a context; the same name from another schemas/ gets a suffix.
        name = suite if not self.definitions else f"{suite}#{len(self.definitions)}"
        gx_suite = self.gx.ExpectationSuite(**{**data, "name": name})
        if len(gx_suite.expectations) != n:  # GE logs and drops an invalid expectation; we refuse
            raise ValueError(
                f"{Path(schemas_dir) / f'{suite}.json'}: {n - len(gx_suite.expectations)} of {n} "
                "expectations are invalid (see the great_expectations log above)"
            )
        gx_suite = self.context.suites.add(gx_suite)
        found = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(name=name, data=self.batch_definition, suite=gx_suite)
        )
        self.definitions[key] = found
        return found


_gx: _Gx | None = None
_lock = threading.RLock()  # the shared context/asset is not safe to drive from two threads


def _get_gx() -> _Gx:
    global _gx
    with _lock:
        if _gx is None:
            _gx = _Gx()
        return _gx


def load_suite_json(suite: str, schemas_dir: str | Path = SCHEMAS_DIR) -> dict[str, Any]:
    """The JSON of `schemas/<suite>.json`, checked for the shape an ExpectationSuite needs."""
    path = Path(schemas_dir) / f"{suite}.json"
    if not path.is_file():
        known = sorted(p.stem for p in Path(schemas_dir).glob("*.json"))
        raise FileNotFoundError(f"{path}: no such suite (suites in {schemas_dir}: {known})")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise ValueError(f"{path}: not an ExpectationSuite (needs a list 'expectations')")
    if data.get("name") != suite:
        raise ValueError(f"{path}: suite name is {data.get('name')!r}, expected {suite!r}")
    return data


def to_pandas(df: pl.DataFrame) -> pd.DataFrame:
    """`df.to_pandas()`, except that nested columns (lists, arrays, structs: embeddings) stay
    Arrow-backed, and categoricals become plain strings.

    GE fingerprints every batch (`pd.util.hash_pandas_object`, falling back to pickling the
    whole frame when a column is unhashable). Embeddings converted the default way are one numpy
    array per cell, which makes that pickle take seconds at 100k rows; as Arrow-backed columns it
    is one buffer copy. Null checks behave the same either way.
    """
    import pandas as pd

    nested = [name for name, dtype in df.schema.items() if dtype.is_nested()]
    categorical = [
        name for name, dtype in df.schema.items() if isinstance(dtype, (pl.Categorical, pl.Enum))
    ]
    flat = df.drop(nested).with_columns(pl.col(c).cast(pl.String) for c in categorical)
    pdf = flat.to_pandas()
    if not nested:
        return pdf
    for name in nested:
        pdf[name] = pd.Series(pd.arrays.ArrowExtensionArray(df[name].to_arrow()), index=pdf.index)
    return pdf[df.columns]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _failure(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k not in ("batch_id",)}
    column = kwargs.get("column") or kwargs.get("column_list") or kwargs.get("column_set")
    body = result.result or {}
    info = result.exception_info or {}
    # exception_info is {"raised_exception", "exception_message", ...} or, when a metric
    # failed, {metric_id: {...}}; collect the messages either way.
    errors: list[str] = []
    if info.get("raised_exception"):
        errors.append(str(info.get("exception_message")))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            errors.append(str(value.get("exception_message")))
    return {
        "type": config.type,
        "column": column,
        "kwargs": kwargs,
        "unexpected_count": body.get("unexpected_count"),
        "element_count": body.get("element_count"),
        "examples": list(body.get("partial_unexpected_list") or [])[:MAX_EXAMPLES],
        "observed_value": body.get("observed_value"),
        "details": body.get("details"),
        "errors": errors,
    }


def _describe(f: dict[str, Any], missing: set[str]) -> str:
    what = f"{f['type']}"
    if f["column"] is not None:
        what += (
            f" on column {f['column']!r}" if isinstance(f["column"], str) else f" on {f['column']}"
        )
    params = {k: v for k, v in f["kwargs"].items() if k not in ("column",)}
    if params:
        what += f" {_short(params)}"
    if f["column"] in missing:
        return f"{what}: column {f['column']!r} is missing"
    if f["errors"]:
        first = f["errors"][0].strip().splitlines()[0] if f["errors"][0].strip() else "error"
        return f"{what}: could not be evaluated: {first[:200]}"
    if f["unexpected_count"]:
        count = f"{f['unexpected_count']} of {f['element_count']} rows"
        examples = ", ".join(_short(v) for v in f["examples"])
        return f"{what}: {count} unexpected, e.g. [{examples}]"
    if f["observed_value"] is not None:
        return f"{what}: observed {_short(f['observed_value'])}"
    if f["details"]:
        return f"{what}: {_short(f['details'])}"
    return f"{what}: failed"


def validate(
    df: pl.DataFrame,
    suite: str,
    schemas_dir: str | Path = SCHEMAS_DIR,
    where: str = "",
) -> None:
    """Check `df` against `schemas_dir/<suite>.json`; raise SchemaViolation if anything fails.

    `where` (an output path, a stage name) leads the message so a failure says what it was.
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"validate expects a polars DataFrame, got {type(df).__name__}")
    if df.height <= CHUNK_ROWS:
        return _validate_frame(df, suite, schemas_dir, where, df.height)
    # pandas holds a string as a Python object: a million rows at once would cost gigabytes,
    # so the suite runs a chunk at a time and uniqueness, which spans chunks, runs on the whole
    for start in range(0, df.height, CHUNK_ROWS):
        _validate_frame(df.slice(start, CHUNK_ROWS), suite, schemas_dir, where, df.height, start)
    _check_unique(df, suite, schemas_dir, where)
    return None


def _validate_frame(
    df: pl.DataFrame,
    suite: str,
    schemas_dir: str | Path,
    where: str,
    total_rows: int,
    offset: int = 0,
) -> None:
    pdf = to_pandas(df)
    with _lock:
        definition = _get_gx().definition(suite, Path(schemas_dir))
        result = definition.run(
            batch_parameters={"dataframe": pdf},
            result_format={"result_format": "BASIC", "partial_unexpected_count": MAX_EXAMPLES},
        )
    if result.success:
        return None
    failures = [_failure(r) for r in result.results if not r.success]
    missing = {
        f["column"]
        for f in failures
        if isinstance(f["column"], str) and f["column"] not in df.columns
    }
    rows = (
        f"{total_rows} rows"
        if df.height == total_rows
        else (f"{total_rows} rows; in rows {offset}-{offset + df.height - 1}")
    )
    head = (
        f"{where or '<frame>'}: {len(failures)} of {len(result.results)} expectations of suite "
        f"'{suite}' failed ({rows})"
    )
    if missing:
        head += f"; missing columns {sorted(missing)} (the frame has {df.columns})"
    lines = [head, *(f"  - {_describe(f, missing)}" for f in failures)]
    raise SchemaViolation("\n".join(lines), failures)


def _check_unique(df: pl.DataFrame, suite: str, schemas_dir: str | Path, where: str) -> None:
    for expectation in load_suite_json(suite, schemas_dir)["expectations"]:
        if expectation["type"] != "expect_column_values_to_be_unique":
            continue
        column = expectation["kwargs"]["column"]
        repeated = df.filter(df[column].is_duplicated())[column]
        if repeated.len():
            failure = {
                "type": expectation["type"],
                "column": column,
                "kwargs": expectation["kwargs"],
                "unexpected_count": repeated.len(),
                "element_count": df.height,
                "examples": repeated.head(MAX_EXAMPLES).to_list(),
                "observed_value": None,
                "details": None,
                "errors": [],
            }
            raise SchemaViolation(
                f"{where or '<frame>'}: 1 expectation of suite '{suite}' failed "
                f"({df.height} rows)\n  - {_describe(failure, set())}",
                [failure],
            )


def validate_file(path: str | Path, suite: str, schemas_dir: str | Path = SCHEMAS_DIR) -> None:
    """Read a parquet file with polars and validate it; the path is the `where`."""
    path = Path(path)
    validate(pl.read_parquet(path), suite, schemas_dir=schemas_dir, where=str(path))
