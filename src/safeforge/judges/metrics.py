"""Judge-quality metrics with "unsafe" as the positive class, in numpy and polars only.

Every value is a plain int, a float rounded to 6 decimals, or None where a ratio is 0/0, so
the dicts go straight into DVC metrics JSON (NaN is not valid JSON).
An item is judged unsafe when p_unsafe >= threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from safeforge.labels import LABELS

log = logging.getLogger(__name__)


def _check(labels: Sequence[str], p_unsafe: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (is_unsafe bool array, float scores) after checking labels, lengths and NaNs."""
    y = np.asarray(list(labels), dtype=object)
    p = np.asarray(p_unsafe, dtype=np.float64).reshape(-1)
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"labels ({y.shape[0]}) and p_unsafe ({p.shape[0]}) differ in length")
    bad = sorted({str(v) for v in y if v not in LABELS})
    if bad:
        raise ValueError(f"labels must be 'safe' or 'unsafe', got {bad[:5]}")
    if not np.all(np.isfinite(p)):
        raise ValueError("p_unsafe contains NaN or infinite values")
    return y == "unsafe", p


# the cut for the val metrics judges log while training (probe, vlm); not a knob: scoring
# applies `score.threshold` from conf/
VAL_THRESHOLD = 0.5


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else round(float(num) / float(den), 6)


def threshold_labels(p_unsafe: Any, threshold: float) -> list[str]:
    """Map scores to "unsafe"/"safe" labels with the same >= rule as `binary_metrics`."""
    p = np.asarray(p_unsafe, dtype=np.float64).reshape(-1)
    return ["unsafe" if v >= threshold else "safe" for v in p]


def auroc(is_unsafe: np.ndarray, p: np.ndarray) -> float | None:
    """Mann-Whitney AUROC: P(score of unsafe > score of safe), ties counted half.

    Computed from average ranks (O(n log n)), which equals the count over all pairs.
    None when only one class is present.
    """
    n_pos = int(is_unsafe.sum())
    n_neg = int(is_unsafe.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    # tied scores share the mean of the ranks they occupy: that is what counts a tie as half
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = avg_rank[inverse.reshape(-1)]
    u = ranks[is_unsafe].sum() - n_pos * (n_pos + 1) / 2.0
    return round(float(u) / (n_pos * n_neg), 6)


def binary_metrics(labels: Sequence[str], p_unsafe: Any, threshold: float) -> dict[str, Any]:
    """Confusion-based rates at `threshold` plus threshold-free AUROC."""
    is_unsafe, p = _check(labels, p_unsafe)
    pred = p >= threshold
    tp = int(np.sum(pred & is_unsafe))
    fp = int(np.sum(pred & ~is_unsafe))
    fn = int(np.sum(~pred & is_unsafe))
    tn = int(np.sum(~pred & ~is_unsafe))
    n_unsafe, n_safe = tp + fn, tn + fp
    recall_unsafe = _ratio(tp, n_unsafe)
    recall_safe = _ratio(tn, n_safe)
    present = [r for r in (recall_unsafe, recall_safe) if r is not None]
    # with one class absent, balanced accuracy falls back to the present class's recall
    # (computed from counts, not the rounded recalls, so rounding happens once)
    if len(present) == 2:
        balanced = round((tp / n_unsafe + tn / n_safe) / 2.0, 6)
    else:
        balanced = present[0] if present else None
    return {
        "n": n_unsafe + n_safe,
        "n_unsafe": n_unsafe,
        "n_safe": n_safe,
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, n_unsafe + n_safe),
        "balanced_accuracy": balanced,
        "unsafe_precision": _ratio(tp, tp + fp),
        "unsafe_recall": recall_unsafe,
        # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and is 0, not undefined, when TP = 0
        "unsafe_f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "unsafe_judged_safe_rate": _ratio(fn, n_unsafe),
        "over_sensitivity_rate": _ratio(fp, n_safe),
        "auroc": auroc(is_unsafe, p),
    }


def grouped_metrics(df: pl.DataFrame, by: str, threshold: float) -> dict[str, dict]:
    """`binary_metrics` per value of column `by` (keys as strings, sorted); null groups skipped."""
    missing = [c for c in ("label", "p_unsafe", by) if c not in df.columns]
    if missing:
        raise ValueError(f"grouped_metrics: missing columns {missing}")
    out: dict[str, dict] = {}
    frame = df.filter(pl.col(by).is_not_null())
    for (key,), group in sorted(frame.group_by([by]), key=lambda kv: str(kv[0][0])):
        out[str(key)] = binary_metrics(
            group["label"].to_list(), group["p_unsafe"].to_numpy(), threshold
        )
    return out


def roc_points(labels: Sequence[str], p_unsafe: Any) -> pl.DataFrame:
    """ROC curve for `dvc plots`: one point per distinct score, from (0, 0) to (1, 1).

    The point at a score s is the rates when items with p_unsafe >= s are judged unsafe.
    The first point's threshold is max score + 1 (nothing judged unsafe): finite, so the
    frame writes to JSON/CSV. With one class present the curve is undefined: an empty frame.
    """
    schema = {"fpr": pl.Float64, "tpr": pl.Float64, "threshold": pl.Float64}
    is_unsafe, p = _check(labels, p_unsafe)
    n_pos = int(is_unsafe.sum())
    n_neg = int(is_unsafe.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        log.warning("roc_points: %d unsafe and %d safe items; ROC undefined", n_pos, n_neg)
        return pl.DataFrame(schema=schema)
    order = np.argsort(-p, kind="stable")
    p_sorted, pos_sorted = p[order], is_unsafe[order]
    tps = np.cumsum(pos_sorted)
    fps = np.cumsum(~pos_sorted)
    # keep the last index of each run of equal scores: ties move the curve in one step
    last = np.r_[np.nonzero(np.diff(p_sorted))[0], p_sorted.shape[0] - 1]
    fpr = np.r_[0.0, fps[last] / n_neg]
    tpr = np.r_[0.0, tps[last] / n_pos]
    thr = np.r_[p_sorted[0] + 1.0, p_sorted[last]]
    return pl.DataFrame(
        {"fpr": np.round(fpr, 6), "tpr": np.round(tpr, 6), "threshold": thr}, schema=schema
    )


def confusion_rows(labels: Sequence[str], pred_labels: Sequence[str]) -> pl.DataFrame:
    """One row per item with columns actual, predicted (DVC's confusion template input)."""
    actual = [str(v) for v in labels]
    predicted = [str(v) for v in pred_labels]
    if len(actual) != len(predicted):
        raise ValueError(f"labels ({len(actual)}) and pred_labels ({len(predicted)}) differ")
    return pl.DataFrame(
        {"actual": actual, "predicted": predicted},
        schema={"actual": pl.String, "predicted": pl.String},
    )
