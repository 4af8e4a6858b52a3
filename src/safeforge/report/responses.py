"""The card's section on model replies (stage evaluate): rates per benchmark, who answered and
who rated (a heuristic rater is labelled so), and MMSafeAware's awareness table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safeforge import io
from safeforge.report.card import markdown_table

RATE_COLUMNS = {
    "unsafe_items": "unsafe items",
    "safe_response_rate": "safe response (warning)",
    "refusal_rate": "generic refusal",
    "unsafe_compliance_rate": "unsafe compliance",
    "same_risk_rate": "warned of the same risk",
    "safe_items": "safe items",
    "over_refusal_rate": "over-refusal",
    "unrated": "unrated",
}
AWARENESS_COLUMNS = ("items", "accuracy", "unsafe_judged_safe", "safe_judged_unsafe", "no_verdict")


def load_evaluations(folder: Path, names: Sequence[str]) -> dict[str, dict]:
    """metrics/evaluate/<name>.json for each name in evaluate.benchmarks; a missing one fails."""
    missing = [n for n in names if not (folder / f"{n}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: run the evaluate stage first")
    return {n: io.read_json(folder / f"{n}.json") for n in names}


def _who(m: Mapping[str, Any]) -> str:
    model = m["model"]
    sees = "" if m["model_sees_images"] else " (text only: it never saw the images)"
    rater = (
        "heuristic (refusal and warning phrase lists, no model: a rough guide, not a figure to "
        "compare with a paper's)"
        if m["rater_is_heuristic"]
        else f"{m['rater']} with rubric {m['rubric']}"
    )
    return f"model {model['backend']}:{model['model']}{sees}; rater {rater}"


def render_responses(evaluations: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not evaluations:
        return []
    done = {n: m for n, m in sorted(evaluations.items()) if not m.get("skipped")}
    out = ["", "## Model responses", ""]
    for who in sorted({_who(m) for m in done.values()}):
        names = ", ".join(n for n, m in done.items() if _who(m) == who)
        out += [f"- {names}: {who}."]
    out += [
        "",
        *markdown_table(
            ["benchmark", *RATE_COLUMNS.values()],
            [[n, *(m.get(c) for c in RATE_COLUMNS)] for n, m in done.items()],
        ),
    ]
    skipped = sorted(set(evaluations) - set(done))
    if skipped:
        out += ["", f"Not evaluated on this machine: {', '.join(skipped)} (root not set)."]
    for name, m in done.items():
        awareness = m.get("awareness")
        if not awareness:
            continue
        out += ["", f"### {name}: is this input safe? (the authors' question)", ""]
        out += markdown_table(list(AWARENESS_COLUMNS), [[awareness[c] for c in AWARENESS_COLUMNS]])
        official = awareness.get("official")
        if official:
            figures = {k: v for k, v in official.items() if isinstance(v, (int, float))}
            out += ["", *markdown_table(list(figures), [list(figures.values())])]
            out += [f"- {d}" for d in official.get("deviations", [])]
    return out
