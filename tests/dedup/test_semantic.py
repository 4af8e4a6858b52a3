"""Blocked semantic near-pairs against brute force, including the k-means blocking path."""

from __future__ import annotations

import numpy as np
import pytest

from safeforge.dedup.semantic import near_pairs, normalise


def planted(n: int, dim: int, seed: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    copies = rng.choice(n, n // 10, replace=False)
    x = np.concatenate([x, x[copies] + 0.05 * rng.normal(size=(len(copies), dim))])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    a, b = np.nonzero(np.triu(sims >= 0.95, k=1))
    return x.astype(np.float32), set(zip(a.tolist(), b.tolist(), strict=True))


def test_small_sets_are_exact() -> None:
    x, brute = planted(300, 24, seed=0)
    assert {tuple(p) for p in near_pairs(x, 0.95).tolist()} == brute
    assert len(brute) >= 30


@pytest.mark.parametrize("seed", [0, 1])
def test_blocked_search_finds_the_planted_pairs(seed: int) -> None:
    # block_size 64 on 2200 rows: k-means blocks, each row probing its two nearest
    x, brute = planted(2000, 24, seed=seed)
    got = {tuple(p) for p in near_pairs(x, 0.95, block_size=64).tolist()}
    assert got <= brute
    assert len(got) >= 0.95 * len(brute)


def test_normalise_centres_and_keeps_cosines() -> None:
    rng = np.random.default_rng(0)
    # all-positive features with a large shared offset, as pooled CNN features are
    raw = rng.random((500, 32)).astype(np.float32) + 5.0
    raw_cos = (raw @ raw.T) / np.outer(*(2 * [np.linalg.norm(raw, axis=1)]))
    assert raw_cos.min() > 0.95  # raw: everything looks alike
    z = normalise(raw.astype(np.float16), dim=32)
    assert z.dtype == np.float32 and z.shape == (500, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    off_diagonal = (z @ z.T)[~np.eye(500, dtype=bool)]
    assert abs(float(off_diagonal.mean())) < 0.05  # centred: unrelated rows near 0
    # with every dimension kept, cosines are those of the centred data
    centred = raw - raw[:].mean(axis=0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(z @ z.T, centred @ centred.T, atol=2e-2)


def test_edge_cases() -> None:
    assert near_pairs(np.zeros((0, 8), np.float32), 0.9).shape == (0, 2)
    assert near_pairs(np.ones((1, 8), np.float32) / np.sqrt(8), 0.9).shape == (0, 2)
