"""An image-free judge: P(unsafe) from the query text alone, out of fold.

A logistic regression on the query embeddings, cross-fitted so no row is scored by a model that
saw its text (folds are grouped by query: a contrast pair's shared query lands in one fold).
An unsafe record this judge already calls unsafe with near certainty does not need its image;
quality drops it as `query_ignores_image`. With fewer than two labels or too few distinct
queries there is nothing to learn from, and every score is 0.5 (undecided).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

log = logging.getLogger(__name__)

FOLDS = 5
# the logistic regression's random_state: fixed for reproducible scores; internal, not a knob
SEED = 0


def text_only_p_unsafe(
    query_emb: np.ndarray, labels: list[str], queries: list[str], seed: int = SEED
) -> np.ndarray:
    """Out-of-fold P(unsafe | query text) per row (float32)."""
    y = np.array([label == "unsafe" for label in labels])
    scores = np.full(len(y), 0.5, dtype=np.float32)
    _, groups = np.unique(np.array(queries, dtype=object), return_inverse=True)
    folds = min(FOLDS, int(groups.max(initial=-1)) + 1)
    if folds < 2 or y.all() or not y.any():
        log.info("text-only judge: too few labels or queries to learn from; scores are 0.5")
        return scores
    for train, test in GroupKFold(n_splits=folds).split(query_emb, y, groups):
        if y[train].all() or not y[train].any():
            continue  # a fold with one class cannot fit: those rows stay undecided
        model = LogisticRegression(C=1.0, max_iter=200, random_state=seed)
        model.fit(query_emb[train], y[train])
        scores[test] = model.predict_proba(query_emb[test])[:, 1]
    return scores
