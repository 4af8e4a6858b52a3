"""The one judge interface, and loading any saved judge from its folder.

A judge is built with `fit(train, val, params)` (a zero-shot judge ignores the data), scores
items with `predict`, and is saved as a folder holding `judge.json` (with "kind") plus whatever
files that kind needs; `load_judge` reads "kind" and hands the folder to the registered class.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import polars as pl

from safeforge import io

JUDGE_FILE = "judge.json"
PREDICTION_SCHEMA = {"p_unsafe": pl.Float64, "pred_category": pl.String, "rationale": pl.String}

# kind -> class, filled by @register_judge when a judge module is imported
JUDGES: dict[str, type[Judge]] = {}
# built-in kinds load their module on demand, so base.py never imports its subclasses
_BUILTIN_MODULES = {
    "probe": "safeforge.judges.probe",
    "vlm": "safeforge.judges.vlm",
    "clue": "safeforge.judges.clue",
}

J = TypeVar("J", bound="Judge")


class Judge(ABC):
    """Scores items: one output row per input row, in order, with PREDICTION_SCHEMA columns."""

    kind: ClassVar[str]
    # the columns `predict` reads; benchmark items have item_id, image_path and text, and
    # scoring computes anything more (e.g. the probe's embeddings) before calling predict
    inputs: ClassVar[tuple[str, ...]] = ("image_path", "text")
    name: str
    # what fit leaves: the training curve (plots/train_judge/history.csv: rows with step,
    # train_loss and val_loss at least, None where not measured; empty for a zero-shot judge)
    # and a JSON-able summary for metrics/train_judge.json
    history: list[dict[str, Any]]
    train_summary: dict[str, Any]
    # counters predict keeps across calls (e.g. invalid generations); scoring reports them
    stats: dict[str, int]

    @classmethod
    @abstractmethod
    def fit(cls, train: pl.DataFrame, val: pl.DataFrame, params: Mapping[str, Any]) -> Judge:
        """Train on `train`, select on `val`; params: the judge config without "kind"."""

    @abstractmethod
    def predict(self, items: pl.DataFrame) -> pl.DataFrame:
        """Return columns p_unsafe (float in [0, 1]), pred_category (str), rationale (str)."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the judge to `directory`, including judge.json with "kind"."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Judge:
        """Read a judge written by `save`."""


def register_judge(cls: type[J]) -> type[J]:
    """Class decorator: make `load_judge` dispatch judge.json's "kind" to this class."""
    JUDGES[cls.kind] = cls
    return cls


def judge_class(kind: str, where: str = "judge.kind") -> type[Judge]:
    """The class registered for `kind`, importing a built-in judge's module on demand."""
    if kind not in JUDGES and kind in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[kind])
    if kind not in JUDGES:
        known = sorted(set(JUDGES) | set(_BUILTIN_MODULES))
        raise ValueError(f"{where}: unknown judge kind {kind!r}; known kinds: {known}")
    return JUDGES[kind]


def build_judge(
    params: Mapping[str, Any], train: pl.DataFrame | None = None, val: pl.DataFrame | None = None
) -> Judge:
    """A judge from its config section ("kind" plus that kind's keys), fitted on train/val; a
    zero-shot judge needs no data (empty frames are passed)."""
    params = dict(params)
    cls = judge_class(params.pop("kind", None))
    empty = pl.DataFrame()
    return cls.fit(empty if train is None else train, empty if val is None else val, params)


def load_judge(directory: Path) -> Judge:
    """Load whatever judge `directory` holds, by the "kind" in its judge.json."""
    path = Path(directory) / JUDGE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {JUDGE_FILE} in {directory}: not a saved judge")
    return judge_class(io.read_json(path).get("kind"), where=str(path)).load(Path(directory))


def safeforge_version() -> str:
    """The installed safeforge version, recorded in each judge.json."""
    try:
        return importlib.metadata.version("safeforge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
