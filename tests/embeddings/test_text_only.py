"""The image-free judge: out-of-fold P(unsafe) from the query text alone."""

from __future__ import annotations

import numpy as np

from safeforge.embeddings.text_only import text_only_p_unsafe


def test_text_that_gives_the_label_away_scores_high_out_of_fold() -> None:
    rng = np.random.default_rng(0)
    n, dim = 400, 16
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    labels = ["unsafe" if i % 2 else "safe" for i in range(n)]
    # half the unsafe rows say it in words: a direction the safe rows never have
    explicit = np.array([i % 4 == 1 for i in range(n)])
    emb[explicit, 0] += 6.0
    queries = [f"query {i}" for i in range(n)]
    p = text_only_p_unsafe(emb, labels, queries)
    assert p.shape == (n,) and p.dtype == np.float32
    assert np.median(p[explicit]) > 0.95  # the text alone gives these away
    implicit_unsafe = np.array([i % 4 == 3 for i in range(n)])
    assert np.median(p[implicit_unsafe]) < 0.8  # these need their image


def test_a_shared_query_is_scored_by_a_model_that_never_saw_it() -> None:
    # a contrast pair: the same text unsafe beside one image, safe beside another. Were its
    # rows in the training folds, the model would memorise them; grouped, it cannot
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    queries = [f"q{i // 2}" for i in range(60)]  # each text twice
    labels = ["unsafe" if i % 2 else "safe" for i in range(60)]
    emb[1::2] = emb[0::2]  # the two rows of a text have the same embedding
    p = text_only_p_unsafe(emb, labels, queries)
    np.testing.assert_allclose(p[0::2], p[1::2])  # one model scored both rows of each text


def test_nothing_to_learn_gives_undecided_scores() -> None:
    emb = np.ones((5, 4), dtype=np.float32)
    assert text_only_p_unsafe(emb, ["unsafe"] * 5, list("abcde")).tolist() == [0.5] * 5
    assert (
        text_only_p_unsafe(emb, ["unsafe", "safe"] * 2 + ["safe"], ["a"] * 5).tolist() == [0.5] * 5
    )  # one distinct query: no fold to hold it out
    assert text_only_p_unsafe(np.zeros((0, 4), np.float32), [], []).shape == (0,)
