"""Near pairs of perceptual hashes (images/phash.py) without all-pairs.

The index is multi-index hashing (Norouzi et al., 2012): split the 64 bits into m substrings;
two hashes within r bits agree on some substring within floor(r/m) bits (pigeonhole). Each
substring is a sorted table; every hash looks up its few neighbours in it with searchsorted, so
the work grows with the rows and the true near pairs, not with the rows squared. m is chosen per
call from the table sizes, so r=8 on a million hashes uses three 21/21/22-bit substrings.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

CHUNK = 1 << 20  # lookups held in memory at once (pairs per chunk stay bounded as well)


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def to_uint64(hashes: list[str] | np.ndarray) -> np.ndarray:
    """16-hex-digit hashes as uint64 (arrays pass through)."""
    if isinstance(hashes, np.ndarray):
        return hashes.astype(np.uint64, copy=False)
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def _substrings(m: int) -> list[tuple[int, int]]:
    edges = [round(64 * k / m) for k in range(m + 1)]
    return list(itertools.pairwise(edges))


def _flip_masks(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), r)]
    return np.array(masks, dtype=np.uint64)


def _choose_m(n: int, max_distance: int) -> int:
    """Substring count with the least expected work: lookups plus candidates to verify.
    Substrings stay at most 24 bits wide: the lookup table has 2**width entries."""

    def cost(m: int) -> float:
        width = 64 // m
        radius = max_distance // m
        lookups = sum(math.comb(width, k) for k in range(radius + 1))
        return m * n * lookups * (1 + n / 2.0**width)

    return min(range(3, max(3, max_distance + 1) + 1), key=cost)


def _candidates(values: np.ndarray, max_distance: int) -> Iterator[np.ndarray]:
    n = len(values)
    m = _choose_m(n, max_distance)
    radius = max_distance // m
    for lo, hi in _substrings(m):
        width = hi - lo
        keys = ((values >> np.uint64(lo)) & np.uint64((1 << width) - 1)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        # a direct-address table of where each key's run starts: one lookup per query
        counts = np.bincount(keys, minlength=1 << width)
        starts = np.cumsum(counts) - counts
        flips = _flip_masks(width, radius).astype(np.int64)
        step = max(1, CHUNK // len(flips))
        for start in range(0, n, step):
            rows = np.arange(start, min(n, start + step))
            queries = (keys[rows, None] ^ flips[None, :]).ravel()
            query_rows = np.repeat(rows, len(flips))
            first, count = starts[queries], counts[queries]
            hit = count > 0
            first, count, query_rows = first[hit], count[hit], query_rows[hit]
            # expand each (row, first..first+count) run into explicit pairs
            total = int(count.sum())
            offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
            a = np.repeat(query_rows, count)
            b = order[np.repeat(first, count) + offsets]
            keep = a < b
            yield np.stack([a[keep], b[keep]], axis=1)


def near_pairs(hashes: list[str] | np.ndarray, max_distance: int) -> np.ndarray:
    """Index pairs (i < j), sorted and unique, whose hashes are within `max_distance` bits."""
    values = to_uint64(hashes)
    if len(values) < 2 or max_distance < 0:
        return np.zeros((0, 2), dtype=np.int64)
    found = []
    for pairs in _candidates(values, max_distance):
        if len(pairs):
            close = np.bitwise_count(values[pairs[:, 0]] ^ values[pairs[:, 1]]) <= max_distance
            found.append(pairs[close])
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)
