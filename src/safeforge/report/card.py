"""reports/report.md: a short dataset card (counts by category and label, drop reasons per
stage) and the scoreboard of every scored benchmark."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from safeforge import io
from safeforge.config import OWN_TEST
from safeforge.labels import LABELS

STAGES = (
    "samples",
    "ingest",
    "describe",
    "generate",
    "embed",
    "dedup",
    "quality",
    "split",
    "augment",
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


def markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table; numbers as _fmt writes them (strings pass through)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _counts(dataset: pl.DataFrame, index: str, on: str, order: tuple[str, ...]) -> list[str]:
    """A count table of `index` rows by `on` columns, columns in a fixed order (a pivot's
    own column order follows hashing, which would make the report differ run to run)."""
    pivot = dataset.group_by(index, on).len().pivot(on=on, index=index, values="len")
    columns = [c for c in order if c in pivot.columns]
    pivot = pivot.fill_null(0).sort(index)
    return markdown_table(
        [index, *columns],
        [[r[index], *(r[c] for c in columns)] for r in pivot.iter_rows(named=True)],
    )


def render(
    dataset: pl.DataFrame,
    stage_metrics: dict[str, dict],
    scores: dict[str, dict],
    top_drop_reasons: int,
    transfer: dict[str, Any] | None = None,
    not_scored: Sequence[str] = (),
    responses: Sequence[str] = (),
) -> str:
    """The card; `scores` holds the benchmarks scored, `not_scored` those skipped (no root);
    `responses` is the model-responses section (report/responses.py), appended as it is."""
    out = ["# safeforge dataset card", ""]
    n_images = dataset["image_id"].n_unique()
    out += [
        f"{dataset.height} records over {n_images} images, {dataset['scenario'].n_unique()} scenarios, "
        f"{dataset['category'].n_unique()} categories.",
        "",
    ]

    out += ["## Records by category and label", ""]
    out += [*_counts(dataset, "category", "label", LABELS), ""]
    out += ["## Records by split and kind", ""]
    out += [*_counts(dataset, "split", "query_type", ("unsafe", "benign", "contrast")), ""]

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
            ]
        )
    out += [*markdown_table(["stage", "in", "out", "dropped (reason: rows)"], rows), ""]

    out += ["## Scoreboard", ""]
    if transfer and transfer["transfer_score"] is not None:
        names = ", ".join(transfer["transfer_benchmarks"])
        out += [
            f"Transfer score (mean balanced accuracy over {names}): "
            f"**{_fmt(transfer['transfer_score'])}**",
            "",
        ]
    else:
        out += ["Transfer score: n/a (no external benchmark scored; see score.benchmarks)", ""]
    out += markdown_table(
        ["benchmark", *SCORE_COLUMNS],
        [[name, *(s.get(c) for c in SCORE_COLUMNS)] for name, s in sorted(scores.items())],
    )
    if not_scored:
        out += [
            "",
            f"Not scored on this machine: {', '.join(sorted(not_scored))} (root not set). Set each "
            'benchmark\'s root in conf/local/ (README, "Benchmarks on your machine").',
        ]
    out += _side_by_side(scores)
    for name, s in sorted(scores.items()):
        if s.get("by_subset"):
            out += ["", f"### {name} by subset", ""]
            out += markdown_table(
                ["subset", *SCORE_COLUMNS],
                [[sub, *(m.get(c) for c in SCORE_COLUMNS)] for sub, m in s["by_subset"].items()],
            )
        if s.get("refused"):
            refused = ", ".join(f"{r}: {n}" for r, n in sorted(s["refused"].items()))
            out += ["", f"Items refused (not scored): {refused}."]
        if s.get("official"):
            out += ["", f"### {name}: the benchmark's own metrics", ""]
            official = s["official"]
            figures = {k: v for k, v in official.items() if isinstance(v, (int, float))}
            out += markdown_table(list(figures), [list(figures.values())])
            out += [f"- {d}" for d in official.get("deviations", [])]
    out += responses
    return "\n".join(out) + "\n"


def dataset_counts(dataset: pl.DataFrame) -> dict[str, Any]:
    """The card's counts as data, for `dvc metrics diff` and the pull-request report."""

    def count(*columns: str) -> dict:
        out: dict = {}
        for row in dataset.group_by(columns).len().sort(columns).iter_rows():
            *keys, n = row
            level = out
            for key in keys[:-1]:
                level = level.setdefault(key, {})
            level[keys[-1]] = n
        return out

    return {
        "records": dataset.height,
        "images": dataset["image_id"].n_unique(),
        "by_label": count("label"),
        "by_category": count("category", "label"),
        "by_split": count("split"),
    }


def by_judge(scores: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """judge -> benchmark -> metrics: the first judge (named by its kind) and the others."""
    out: dict[str, dict[str, dict]] = {}
    for bench, s in sorted(scores.items()):
        out.setdefault(s.get("judge", "judge"), {})[bench] = s
        for name, m in s.get("other_judges", {}).items():
            out.setdefault(name, {})[bench] = m
    return out


def _side_by_side(scores: dict[str, dict]) -> list[str]:
    """Balanced accuracy and AUROC of every judge scored, a row per benchmark."""
    judges = by_judge(scores)
    if len(judges) < 2:
        return []
    header = ["benchmark"]
    for j in judges:
        header += [f"{j} balanced acc.", f"{j} AUROC"]
    rows = []
    for bench in sorted(scores):
        row: list[Any] = [bench]
        for per in judges.values():
            m = per.get(bench, {})
            row += [m.get("balanced_accuracy"), m.get("auroc")]
        rows.append(row)
    return ["", "### Judges side by side", "", *markdown_table(header, rows)]


def load_metrics(folder: Path) -> tuple[dict[str, dict], dict[str, dict]]:

    stages = {p.stem: io.read_json(p) for p in sorted(folder.glob("*.json")) if p.stem != "report"}
    scores = {p.stem: io.read_json(p) for p in sorted((folder / "score").glob("*.json"))}
    return stages, scores


def transfer_score(scores: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean balanced accuracy over the external benchmarks scored (the own test split is not
    one); None when there are none, rather than a number that means nothing."""
    external = {
        name: m["balanced_accuracy"]
        for name, m in sorted(scores.items())
        if name != OWN_TEST and m.get("balanced_accuracy") is not None
    }
    return {
        "transfer_score": round(sum(external.values()) / len(external), 4) if external else None,
        "transfer_benchmarks": sorted(external),
        "by_benchmark": external,  # balanced accuracy of each
    }
