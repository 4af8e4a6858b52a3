"""Semantic near-duplicates: image embeddings with cosine >= a threshold, found block by block.

The embeddings are centred on their mean and unit-normalised (open_nsfw's pooled features are
all positive, so raw cosines sit near 1 for any two photos), then projected onto their top
`dim` principal components. Exact all-pairs would be n^2; instead, as in SemDeDup (Abbas et al.,
2023), spherical k-means cuts the set into blocks of about `block_size` and each row joins the
blocks of its `probes` nearest centroids, so a near pair split by a block boundary is still seen
together. Only one block's similarity matrix is held at a time: memory is the n x dim matrix
plus one block_size^2 product.
"""

from __future__ import annotations

import itertools

import numpy as np

ROWS_PER_CHUNK = 8192  # rows projected / assigned at once
PRODUCT_CELLS = 1 << 23  # similarity cells computed at once (32 MiB of float32)
# the PCA sample and the k-means start: fixed so dedup is deterministic; internal, not a knob
SEED = 0


def normalise(
    emb: np.ndarray, dim: int = 128, sample: int = 10_000, seed: int = SEED
) -> np.ndarray:
    """Centre, project onto the top `dim` principal directions, unit-normalise: (n, dim) float32.

    The mean and the directions are fitted on at most `sample` rows; rows are projected in chunks
    so a float16 input is never widened whole.
    """
    n, d = emb.shape
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(n, size=min(n, sample), replace=False))
    fit = emb[fit_rows].astype(np.float32)
    mean = fit.mean(axis=0)
    fit -= mean
    fit /= np.maximum(np.linalg.norm(fit, axis=1, keepdims=True), 1e-12)
    dim = min(dim, d, max(1, len(fit_rows) - 1))
    # eigenvectors of the sample's covariance, largest first: the principal directions
    _, vectors = np.linalg.eigh(fit.T @ fit)
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :dim], dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, ROWS_PER_CHUNK):
        chunk = emb[start : start + ROWS_PER_CHUNK].astype(np.float32) - mean
        chunk /= np.maximum(np.linalg.norm(chunk, axis=1, keepdims=True), 1e-12)
        out[start : start + ROWS_PER_CHUNK] = chunk @ basis
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def _block_pairs(
    x: np.ndarray, rows: np.ndarray, min_cosine: float, top_k: int | None = None
) -> np.ndarray:
    """Pairs within `rows`, a strip of rows at a time (a skewed block stays bounded). With
    `top_k`, each row keeps only its `top_k` most similar partners in the block: a family of
    look-alikes then yields n * top_k pairs, not n^2 / 2."""
    found = []
    m = len(rows)
    step = max(1, PRODUCT_CELLS // max(m, 1))
    for start in range(0, m, step):
        if top_k is None:
            sims = x[rows[start : start + step]] @ x[rows[start:]].T
            a, b = np.nonzero(np.triu(sims >= min_cosine, k=1))
            found.append(np.stack([rows[start + a], rows[start + b]], axis=1))
            continue
        sims = x[rows[start : start + step]] @ x[rows].T
        strip = np.arange(len(sims))
        sims[strip, start + strip] = -np.inf  # not its own partner
        k = min(top_k, m - 1)
        if k < 1:
            continue
        best = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        keep = np.take_along_axis(sims, best, axis=1) >= min_cosine
        a = np.repeat(strip, k).reshape(-1, k)[keep]
        found.append(np.stack([rows[start + a], rows[best[keep]]], axis=1))
    return np.sort(np.concatenate(found), axis=1) if found else np.zeros((0, 2), np.int64)


def _kmeans(x: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    """Spherical k-means centroids (k, dim), fitted on a sample of at most 64 rows per centroid."""
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=min(len(x), 64 * k), replace=False)]
    centroids = sample[rng.choice(len(sample), size=k, replace=False)].copy()
    for _ in range(iterations):
        nearest = np.argmax(sample @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, sample)
        empty = ~sums.any(axis=1)
        sums[empty] = sample[rng.choice(len(sample), size=int(empty.sum()), replace=False)]
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return centroids


def near_pairs(
    x: np.ndarray,
    min_cosine: float,
    block_size: int = 1024,
    probes: int = 2,
    iterations: int = 10,
    seed: int = SEED,
    top_k: int | None = None,
) -> np.ndarray:
    """Index pairs (i < j), sorted and unique, with cosine >= min_cosine; `x` unit rows. With
    `top_k`, only pairs among a row's `top_k` most similar in a block it was searched in."""
    n = len(x)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if n <= 2 * block_size:  # small: exact, in row blocks
        found = [_block_pairs(x, np.arange(n), min_cosine, top_k)]
    else:
        centroids = _kmeans(x, n // block_size, iterations, seed)
        member_of = np.empty((n, probes), dtype=np.int64)
        for start in range(0, n, ROWS_PER_CHUNK):
            sims = x[start : start + ROWS_PER_CHUNK] @ centroids.T
            member_of[start : start + ROWS_PER_CHUNK] = np.argsort(-sims, axis=1)[:, :probes]
        flat = member_of.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(len(centroids) + 1))
        found = [
            _block_pairs(x, np.sort(order[lo:hi] // probes), min_cosine, top_k)
            for lo, hi in itertools.pairwise(bounds)
            if hi - lo > 1
        ]
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    return np.unique(pairs.astype(np.int64), axis=0) if len(pairs) else pairs.astype(np.int64)
