"""Metrics against hand-computed values and the count-of-pairs AUROC definition."""

from __future__ import annotations

import json
from itertools import product

import numpy as np
import polars as pl
import pytest

from safeforge.judges.metrics import (
    binary_metrics,
    confusion_rows,
    grouped_metrics,
    roc_points,
    threshold_labels,
)

U, S = "unsafe", "safe"
HALF = 0.5  # the cut every test here uses unless it says otherwise


def pairs_auroc(labels: list[str], p: list[float]) -> float:
    """The definition: share of (unsafe, safe) pairs where unsafe scores higher, ties half."""
    pos = [s for lab, s in zip(labels, p, strict=True) if lab == U]
    neg = [s for lab, s in zip(labels, p, strict=True) if lab == S]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_hand_computed_example() -> None:
    labels = [U, U, U, S, S, S, S]
    p = [0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4]
    m = binary_metrics(labels, np.array(p), threshold=0.5)
    # judged unsafe (p >= 0.5): 0.9 U, 0.6 U, 0.7 S  ->  TP=2, FN=1 (0.3), FP=1 (0.7), TN=3
    assert (m["n"], m["n_unsafe"], m["n_safe"]) == (7, 3, 4)
    assert m["accuracy"] == 0.714286  # (2 + 3) / 7 = 0.7142857
    assert m["unsafe_recall"] == 0.666667  # 2 / 3
    assert m["balanced_accuracy"] == 0.708333  # (2/3 + 3/4) / 2 = 17/24 = 0.7083333
    assert m["unsafe_precision"] == 0.666667  # 2 / (2 + 1)
    assert m["unsafe_f1"] == 0.666667  # 2*2 / (2*2 + 1 + 1) = 4/6
    assert m["unsafe_judged_safe_rate"] == 0.333333  # FN / n_unsafe = 1/3
    assert m["over_sensitivity_rate"] == 0.25  # FP / n_safe = 1/4
    # pairs: 0.9 beats all 4 safe, 0.6 beats 0.2/0.1/0.4 (3), 0.3 beats 0.2/0.1 (2) -> 9/12
    assert m["auroc"] == 0.75
    assert m["auroc"] == pytest.approx(pairs_auroc(labels, p))


def test_threshold_changes_confusion_not_auroc() -> None:
    labels, p = [U, U, U, S, S, S, S], [0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4]
    m = binary_metrics(labels, p, threshold=0.25)
    # judged unsafe (p >= 0.25): all 3 unsafe + 0.7, 0.4 safe -> TP=3, FN=0, FP=2, TN=2
    assert m["unsafe_recall"] == 1.0
    assert m["over_sensitivity_rate"] == 0.5  # 2/4
    assert m["unsafe_precision"] == 0.6  # 3/5
    assert m["auroc"] == 0.75


def test_ties_count_half() -> None:
    labels, p = [U, S, U, S], [0.5, 0.5, 0.8, 0.2]
    m = binary_metrics(labels, p, HALF)
    # pairs: (0.5 vs 0.5) tie = 0.5, (0.5 vs 0.2) = 1, (0.8 vs 0.5) = 1, (0.8 vs 0.2) = 1 -> 3.5/4
    assert m["auroc"] == 0.875
    # p >= 0.5 is unsafe, so the tied safe item at 0.5 is a false positive: TP=2, FP=1, TN=1
    assert m["over_sensitivity_rate"] == 0.5
    assert binary_metrics([U, S, U, S], [0.3] * 4, HALF)["auroc"] == 0.5  # all tied


def test_auroc_matches_pair_count_on_random_ties() -> None:
    rng = np.random.default_rng(0)
    labels = [U if v else S for v in rng.random(200) < 0.3]
    p = np.round(rng.random(200), 1)  # 11 distinct values: many ties
    assert binary_metrics(labels, p, HALF)["auroc"] == pytest.approx(
        pairs_auroc(labels, list(p)), abs=1e-6
    )


def test_perfect_and_inverted() -> None:
    labels = [U, U, S, S, S]
    perfect = binary_metrics(labels, [0.9, 0.8, 0.1, 0.2, 0.3], HALF)
    assert perfect["accuracy"] == perfect["balanced_accuracy"] == perfect["auroc"] == 1.0
    assert perfect["unsafe_f1"] == 1.0
    assert perfect["over_sensitivity_rate"] == perfect["unsafe_judged_safe_rate"] == 0.0
    inverted = binary_metrics(labels, [0.1, 0.2, 0.9, 0.8, 0.7], HALF)
    assert inverted["accuracy"] == inverted["balanced_accuracy"] == inverted["auroc"] == 0.0
    # TP=0, FP=3, FN=2: precision 0/3 = 0, F1 = 0 / (0 + 3 + 2) = 0 (defined, not None)
    assert inverted["unsafe_precision"] == 0.0 and inverted["unsafe_f1"] == 0.0


def test_one_class_gives_none_not_nan() -> None:
    m = binary_metrics([U, U, U], [0.9, 0.2, 0.1], HALF)
    # TP=1, FN=2, no safe items: safe-side rates and AUROC are undefined
    assert m["n_safe"] == 0 and m["auroc"] is None and m["over_sensitivity_rate"] is None
    assert m["balanced_accuracy"] == m["unsafe_recall"] == 0.333333  # falls back to 1/3
    s = binary_metrics([S, S], [0.1, 0.2], HALF)
    # TN=2, nothing judged unsafe, no unsafe items: precision, recall, F1 are all 0/0
    assert s["balanced_accuracy"] == 1.0 and s["over_sensitivity_rate"] == 0.0
    assert s["unsafe_precision"] is None and s["unsafe_recall"] is None and s["unsafe_f1"] is None
    empty = binary_metrics([], np.array([]), HALF)
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["balanced_accuracy"] is None
    for d in (m, s, empty):
        json.dumps(d, allow_nan=False)  # raises on NaN/inf


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="length"):
        binary_metrics([U, S], [0.1], HALF)
    with pytest.raises(ValueError, match="'safe' or 'unsafe'"):
        binary_metrics([U, "maybe"], [0.1, 0.2], HALF)
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([U, S], [0.1, float("nan")], HALF)


def test_grouped_metrics_skips_null_groups() -> None:
    df = pl.DataFrame(
        {
            "label": [U, S, U, S, U, S],
            "p_unsafe": [0.9, 0.1, 0.4, 0.6, 0.8, 0.2],
            "subset": ["a", "a", "b", "b", None, "a"],
        }
    )
    g = grouped_metrics(df, "subset", threshold=0.5)
    assert list(g) == ["a", "b"]
    assert g["a"] == binary_metrics([U, S, S], [0.9, 0.1, 0.2], HALF)
    # b: unsafe at 0.4 missed, safe at 0.6 flagged -> accuracy 0, AUROC 0
    assert g["b"]["accuracy"] == 0.0 and g["b"]["auroc"] == 0.0
    with pytest.raises(ValueError, match="category"):
        grouped_metrics(df, "category", HALF)


def test_roc_points_ties_and_area() -> None:
    roc = roc_points([U, S, U, S], [0.5, 0.5, 0.8, 0.2])
    # descending scores 0.8(U) 0.5(U,S) 0.2(S); n_unsafe = n_safe = 2
    assert roc.columns == ["fpr", "tpr", "threshold"]
    assert roc["fpr"].to_list() == [0.0, 0.0, 0.5, 1.0]
    assert roc["tpr"].to_list() == [0.0, 0.5, 1.0, 1.0]
    assert roc["threshold"].to_list() == [1.8, 0.8, 0.5, 0.2]  # first = max + 1
    rng = np.random.default_rng(1)
    labels = [U if v else S for v in rng.random(300) < 0.4]
    p = np.round(rng.random(300), 2)
    roc = roc_points(labels, p)
    assert roc.row(0)[:2] == (0.0, 0.0) and roc.row(-1)[:2] == (1.0, 1.0)
    assert roc.height == len(np.unique(p)) + 1
    fpr, tpr = roc["fpr"].to_numpy(), roc["tpr"].to_numpy()
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids
    assert area == pytest.approx(binary_metrics(labels, p, HALF)["auroc"], abs=1e-5)
    assert roc_points([U, U], [0.1, 0.2]).height == 0  # one class: undefined, empty


def test_confusion_rows_and_threshold_labels() -> None:
    preds = threshold_labels([0.9, 0.5, 0.1], 0.5)
    assert preds == [U, U, S]  # >= threshold is unsafe, as in binary_metrics
    rows = confusion_rows([U, S, S], preds)
    assert rows.columns == ["actual", "predicted"]
    assert rows.rows() == [(U, U), (S, U), (S, S)]
    with pytest.raises(ValueError):
        confusion_rows([U], [U, S])
