"""Perceptual hashes (pHash, 64 bits) and an index that finds near pairs without all-pairs.

pHash: grey 32x32, 2-D DCT, the 8x8 lowest frequencies against their median. Resizing and
re-encoding barely move it; different photos land ~32 bits apart.

The index splits the 64 bits into `max_distance + 1` bands: two hashes within `max_distance`
bits must agree exactly on at least one band (pigeonhole), so only hashes sharing a band are
compared.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy.fft import dctn


def phash(image: Image.Image) -> str:
    grey = np.asarray(
        image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64
    )
    low = dctn(grey, norm="ortho")[:8, :8]
    bits = (low > np.median(low)).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def near_pairs(hashes: Sequence[str], max_distance: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose hashes are within `max_distance` bits."""
    values = [int(h, 16) for h in hashes]
    n_bands = max_distance + 1
    edges = [int(e) for e in np.linspace(0, 64, n_bands + 1)]
    candidates: set[tuple[int, int]] = set()
    for lo, hi in itertools.pairwise(edges):
        mask = ((1 << (hi - lo)) - 1) << lo
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, v in enumerate(values):
            buckets[v & mask].append(i)
        for members in buckets.values():
            candidates.update((a, b) for k, a in enumerate(members) for b in members[k + 1 :])
    return sorted(
        (i, j) for i, j in candidates if (values[i] ^ values[j]).bit_count() <= max_distance
    )
