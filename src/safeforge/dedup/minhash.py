"""Near-duplicate text by MinHash LSH over embed's signatures (embeddings/minhash.py), banding
done on whole arrays. The band count b and rows per band r for a Jaccard threshold are
datasketch's own choice (`MinHashLSH(threshold, num_perm).b / .r`).

Banding is where datasketch used naively is slow (a Python insert and query per text): here each
band's r values are folded into one 64-bit key per row, rows are sorted by key, and rows sharing
a key become candidates. Candidates are kept when their estimated Jaccard (the share of equal
signature values) reaches the threshold, which trims LSH's false positives. A large bucket is
checked against its first member only (a star), so one popular bucket cannot cost n^2.
"""

from __future__ import annotations

import numpy as np
from datasketch import MinHashLSH

RECALL_WEIGHTS = (0.1, 0.9)  # datasketch's (false positive, false negative) weights
ALL_PAIRS_BUCKET = 64  # buckets up to this size check every pair; larger ones, a star


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch picks for this threshold, weighted towards recall:
    candidates are verified afterwards, so a false positive costs a comparison, not a wrong drop."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=RECALL_WEIGHTS)
    return lsh.b, lsh.r


def _band_keys(sigs: np.ndarray, lo: int, hi: int) -> np.ndarray:
    # fold r 32-bit values into one 64-bit key (wrapping multiply-add; collisions ~ 2^-64)
    key = np.zeros(len(sigs), dtype=np.uint64)
    for j in range(lo, hi):
        key = key * np.uint64(0x9E3779B97F4A7C15) + sigs[:, j].astype(np.uint64)
    return key


def _bucket_pairs(key: np.ndarray) -> np.ndarray:
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    # star: every member with the bucket's first member (covers all buckets of size 2)
    extra = sizes - 1
    total = int(extra.sum())
    within = np.arange(total) - np.repeat(np.cumsum(extra) - extra, extra) + 1
    pairs = [
        np.stack(
            [np.repeat(order[starts], extra), order[np.repeat(starts, extra) + within]], axis=1
        )
    ]
    # small buckets of three or more: also every pair among the followers
    small = (sizes > 2) & (sizes <= ALL_PAIRS_BUCKET)
    for start, size in zip(starts[small], sizes[small], strict=True):
        rows = order[start + 1 : start + size]
        a, b = np.triu_indices(len(rows), k=1)
        pairs.append(np.stack([rows[a], rows[b]], axis=1))
    return np.concatenate(pairs)


def near_duplicate_pairs(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """Index pairs (i < j), sorted and unique, whose estimated Jaccard is >= threshold."""
    n, num_perm = sigs.shape
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    bands, rows = lsh_bands(threshold, num_perm)
    found = []
    for band in range(bands):
        pairs = _bucket_pairs(_band_keys(sigs, band * rows, (band + 1) * rows))
        if len(pairs):
            similar = (sigs[pairs[:, 0]] == sigs[pairs[:, 1]]).mean(axis=1) >= threshold
            found.append(np.sort(pairs[similar], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)
