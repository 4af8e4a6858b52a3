"""What every stage script shares: logging, validated atomic table writes, a clean failure."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl

from safeforge import io
from safeforge.validate import validate

log = logging.getLogger("safeforge")


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("SAFEFORGE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "great_expectations", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def write_table(path: str | Path, df: pl.DataFrame, suite: str) -> None:
    """Validate `df` against schemas/<suite>.json, then write it atomically."""

    validate(df, suite, where=str(path))
    io.write_parquet(path, df)


def scan_table(path: str | Path) -> pl.LazyFrame:
    """A parquet table to read lazily: only the rows and columns a query needs leave the disk."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing input; run the stage that writes it (dvc repro)")
    return pl.scan_parquet(path)


def read_table(path: str | Path, columns: list[str] | None = None) -> pl.DataFrame:
    """A parquet table (only `columns` when given: wide embedding columns stay on disk)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing input; run the stage that writes it (dvc repro)")
    if columns is not None:
        missing = sorted(set(columns) - set(pl.read_parquet_schema(path)))
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; rerun the stage that writes it")
    return pl.read_parquet(path, columns=columns)


def run(main: Callable[[], object]) -> None:
    """Run a stage's main; a failure prints one clear line (and the traceback at DEBUG)."""
    setup_logging()
    try:
        main()
    except (ValueError, KeyError, FileNotFoundError) as err:
        # expected failures (bad input, bad config, a schema violation): one clear message
        log.debug("stage failed", exc_info=True)
        log.error("%s: %s", type(err).__name__, err)
        sys.exit(1)
