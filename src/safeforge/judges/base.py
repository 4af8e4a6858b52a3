"""The one judge interface, and loading any saved judge from its folder.

A saved judge is a folder holding `judge.json` (with "kind") plus whatever files that kind
needs; `load_judge` reads "kind" and hands the folder to the registered class.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, TypeVar

import polars as pl

from safeforge import io

JUDGE_FILE = "judge.json"
PREDICTION_SCHEMA = {"p_unsafe": pl.Float64, "pred_category": pl.String, "rationale": pl.String}

# kind -> class, filled by @register_judge when a judge module is imported
JUDGES: dict[str, type[Judge]] = {}
# built-in kinds load their module on demand, so base.py never imports its subclasses
_BUILTIN_MODULES = {"probe": "safeforge.judges.probe"}

J = TypeVar("J", bound="Judge")


class Judge(ABC):
    """Scores items: one output row per input row, in order, with PREDICTION_SCHEMA columns."""

    kind: ClassVar[str]
    # the columns `predict` reads; benchmark items have item_id, image_path and text, and
    # scoring computes anything more (e.g. the probe's embeddings) before calling predict
    inputs: ClassVar[tuple[str, ...]] = ("image_path", "text")
    name: str

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


def load_judge(directory: Path) -> Judge:
    """Load whatever judge `directory` holds, by the "kind" in its judge.json."""
    path = Path(directory) / JUDGE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {JUDGE_FILE} in {directory}: not a saved judge")
    kind = io.read_json(path).get("kind")
    if kind not in JUDGES and kind in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[kind])
    if kind not in JUDGES:
        known = sorted(set(JUDGES) | set(_BUILTIN_MODULES))
        raise ValueError(f"{path}: unknown judge kind {kind!r}; known kinds: {known}")
    return JUDGES[kind].load(Path(directory))
