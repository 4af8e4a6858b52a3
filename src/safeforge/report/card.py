"""reports/report.md: a short dataset card (counts by category and label, drop reasons per
stage) and the scoreboard of every scored benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

STAGES = (
    "samples",
    "ingest",
    "describe",
    "generate",
    "embed",
    "dedup",
    "quality",
    "split",
    "train_judge",
)
SCORE_COLUMNS = (
    "n",
    "accuracy",
    "balanced_accuracy",
    "unsafe_f1",
    "unsafe_judged_safe_rate",
    "over_sensitivity_rate",
    "auroc",
)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def render(
    dataset: pl.DataFrame,
    stage_metrics: dict[str, dict],
    scores: dict[str, dict],
    top_drop_reasons: int,
) -> str:
    out = ["# safeforge dataset card", ""]
    n_images = dataset["image_id"].n_unique()
    out += [
        f"{dataset.height} records over {n_images} images, {dataset['scenario'].n_unique()} scenarios, "
        f"{dataset['category'].n_unique()} categories.",
        "",
    ]

    out += ["## Records by category and label", ""]
    pivot = (
        dataset.group_by("category", "label")
        .len()
        .pivot(on="label", index="category", values="len")
        .fill_null(0)
        .sort("category")
    )
    labels = [c for c in ("safe", "unsafe") if c in pivot.columns]
    out += [
        *_table(
            ["category", *labels],
            [[r["category"], *(r[c] for c in labels)] for r in pivot.iter_rows(named=True)],
        ),
        "",
    ]

    out += ["## Records by split and kind", ""]
    kinds = (
        dataset.group_by("split", "query_type")
        .len()
        .pivot(on="query_type", index="split", values="len")
        .fill_null(0)
        .sort("split")
    )
    cols = [c for c in kinds.columns if c != "split"]
    out += [
        *_table(
            ["split", *cols],
            [[r["split"], *(r[c] for c in cols)] for r in kinds.iter_rows(named=True)],
        ),
        "",
    ]

    out += ["## Rows through the pipeline", ""]
    rows = []
    for stage in STAGES:
        m = stage_metrics.get(stage)
        if m is None:
            continue
        reasons = sorted(m.get("dropped", {}).items(), key=lambda kv: -kv[1])[:top_drop_reasons]
        rows.append(
            [
                stage,
                m["rows_in"],
                m["rows_out"],
                ", ".join(f"{r}: {n}" for r, n in reasons) or "-",
                m["seconds"],
            ]
        )
    out += [*_table(["stage", "in", "out", "dropped (reason: rows)", "seconds"], rows), ""]

    out += ["## Scoreboard", ""]
    out += _table(
        ["benchmark", *SCORE_COLUMNS],
        [[name, *(s.get(c) for c in SCORE_COLUMNS)] for name, s in sorted(scores.items())],
    )
    for name, s in sorted(scores.items()):
        if s.get("by_subset"):
            out += ["", f"### {name} by subset", ""]
            out += _table(
                ["subset", *SCORE_COLUMNS],
                [[sub, *(m.get(c) for c in SCORE_COLUMNS)] for sub, m in s["by_subset"].items()],
            )
    return "\n".join(out) + "\n"


def load_metrics(folder: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    from safeforge import io

    stages = {p.stem: io.read_json(p) for p in sorted(folder.glob("*.json")) if p.stem != "report"}
    scores = {p.stem: io.read_json(p) for p in sorted((folder / "score").glob("*.json"))}
    return stages, scores
