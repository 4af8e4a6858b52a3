"""pHash near-pair search (the multi-index in dedup/perceptual.py) at several distances, against
exhaustive search on a sample in the same run: how the cost grows with the threshold.

    python benchmarks/phash_search.py [--n 250000] [--distances 8,10,12] [--sample 20000]

Hashes are uniform random 64-bit values plus a planted near copy of every 10th one (1-4 bits
flipped), so every distance has pairs to find; real pHashes cluster more, which costs more.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from safeforge.dedup.perceptual import near_pairs


def hashes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, n, dtype=np.uint64
    )
    copies = values[: n // 10].copy()
    for row in range(len(copies)):
        for bit in rng.choice(64, rng.integers(1, 5), replace=False):
            copies[row] ^= np.uint64(1) << np.uint64(bit)
    return np.concatenate([values[: n - len(copies)], copies])


def exhaustive(values: np.ndarray, max_distance: int) -> int:
    """Pairs within max_distance by comparing every pair (in row blocks)."""
    found = 0
    for start in range(0, len(values), 512):
        block = values[start : start + 512, None] ^ values[None, :]
        close = np.bitwise_count(block) <= max_distance
        rows, cols = np.nonzero(close)
        found += int(((rows + start) < cols).sum())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=250_000)
    parser.add_argument("--distances", default="8,10,12")
    parser.add_argument("--sample", type=int, default=20_000, help="exhaustive search on this many")
    args = parser.parse_args()
    values, sample = hashes(args.n), hashes(args.sample, seed=1)
    for d in (int(x) for x in args.distances.split(",")):
        start = time.perf_counter()
        pairs = near_pairs(values, d)
        t_index = time.perf_counter() - start
        start = time.perf_counter()
        brute = exhaustive(sample, d)
        t_brute = time.perf_counter() - start
        start = time.perf_counter()
        indexed = len(near_pairs(sample, d))
        t_small = time.perf_counter() - start
        assert indexed == brute, (d, indexed, brute)  # the index misses nothing
        print(
            f"distance {d:2d}: {args.n:,} hashes in {t_index:6.1f}s ({len(pairs):,} pairs); "
            f"{args.sample:,}: index {t_small:.2f}s vs exhaustive {t_brute:.2f}s "
            f"(x{t_brute / t_small:.1f}, same {brute:,} pairs)"
        )


if __name__ == "__main__":
    main()
