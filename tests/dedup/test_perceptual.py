"""pHash on real photos (scikit-image samples) and the multi-index against brute force."""

from __future__ import annotations

import io
import itertools
import random

import numpy as np
import pytest
from PIL import Image
from skimage import data

from safeforge.dedup import perceptual
from safeforge.dedup.perceptual import hamming, to_uint64
from safeforge.images.phash import phash


def near_pairs(hashes: list[str], max_distance: int) -> list[tuple[int, int]]:
    return [tuple(p) for p in perceptual.near_pairs(hashes, max_distance).tolist()]


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {
        "astronaut": Image.fromarray(data.astronaut()),
        "coffee": Image.fromarray(data.coffee()),
        "chelsea": Image.fromarray(data.chelsea()),
    }


def reencode_jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_phash_format(photos: dict[str, Image.Image]) -> None:
    h = phash(photos["astronaut"])
    assert len(h) == 16 and int(h, 16) >= 0  # 64 bits as 16 hex digits
    assert phash(photos["astronaut"]) == h  # deterministic
    # 64 bits against their median: roughly half are set (exactly 32 unless ties)
    assert 24 <= bin(int(h, 16)).count("1") <= 40


def test_phash_stable_under_resize_and_reencode(photos: dict[str, Image.Image]) -> None:
    a = photos["astronaut"]
    h = phash(a)
    half = a.resize((a.width // 2, a.height // 2), Image.Resampling.BILINEAR)
    assert hamming(h, phash(half)) <= 8
    assert hamming(h, phash(reencode_jpeg(a, 80))) <= 8
    assert hamming(h, phash(reencode_jpeg(half, 80))) <= 8
    assert hamming(h, phash(a.convert("L"))) <= 8  # colour does not matter, only grey


def test_different_photos_are_far_apart(photos: dict[str, Image.Image]) -> None:
    hashes = {name: phash(img) for name, img in photos.items()}
    for a, b in itertools.combinations(hashes, 2):
        assert hamming(hashes[a], hashes[b]) > 16, (a, b)


def test_hamming() -> None:
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("0000000000000000", "ffffffffffffffff") == 64
    assert hamming("8000000000000001", "0000000000000000") == 2  # top and bottom bit
    assert hamming("00000000000000f0", "000000000000000f") == 8


def brute_force(hashes: list[str], max_distance: int) -> list[tuple[int, int]]:
    return [
        (i, j)
        for i, j in itertools.combinations(range(len(hashes)), 2)
        if hamming(hashes[i], hashes[j]) <= max_distance
    ]


def planted(seed: int, n_random: int = 300) -> list[str]:
    """Random 64-bit hashes plus near copies flipping 1..16 bits, spread over all bands,
    plus exact copies."""
    rng = random.Random(seed)
    values = [rng.getrandbits(64) for _ in range(n_random)]
    for k in range(1, 17):
        for _ in range(6):
            base = rng.choice(values[:n_random])
            bits = rng.sample(range(64), k)
            values.append(base ^ sum(1 << b for b in bits))
    values += values[:5]  # exact duplicates
    rng.shuffle(values)
    return [f"{v:016x}" for v in values]


@pytest.mark.parametrize("max_distance", [0, 4, 8, 12])
@pytest.mark.parametrize("seed", [0, 1])
def test_near_pairs_equals_brute_force(max_distance: int, seed: int) -> None:
    hashes = planted(seed)
    expected = brute_force(hashes, max_distance)
    # the planted copies make the expectation non-trivial
    assert len(expected) >= 5 + (6 * max_distance if max_distance else 0)
    assert near_pairs(hashes, max_distance) == expected


def test_near_pairs_adversarial_bits_at_band_edges() -> None:
    # distance exactly max_distance, one flipped bit per band (worst case for the pigeonhole
    # index) and one more bit (just outside)
    base = 0x0123456789ABCDEF
    for max_distance in (1, 4, 8, 12):
        n_bands = max_distance + 1
        edges = [round(64 * k / n_bands) for k in range(n_bands)]
        one_per_band = base ^ sum(1 << e for e in edges[:max_distance])
        too_far = one_per_band ^ (1 << 63)
        hashes = [f"{v:016x}" for v in (base, one_per_band, too_far)]
        assert hamming(hashes[0], hashes[1]) == max_distance
        assert near_pairs(hashes, max_distance) == brute_force(hashes, max_distance)
        assert (0, 1) in near_pairs(hashes, max_distance)


def test_near_pairs_edge_cases() -> None:
    assert near_pairs([], 8) == []
    assert near_pairs(["00000000000000ff"], 8) == []
    assert near_pairs(["00000000000000ff", "00000000000000ff"], 0) == [(0, 1)]
    # i < j, sorted
    pairs = near_pairs(["ffffffffffffffff", "0000000000000000", "fffffffffffffffe"], 1)
    assert pairs == [(0, 2)]


def test_near_pairs_at_scale_finds_every_planted_pair() -> None:
    # 200k random hashes (the table then uses three wide substrings) plus copies 1..10 bits away
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**63, 200_000, dtype=np.uint64) * np.uint64(2)
    copies = []
    for k in range(1, 11):
        for base in rng.choice(len(values), 20, replace=False):
            bits = rng.choice(64, k, replace=False)
            copies.append((int(base), int(values[base]) ^ sum(1 << int(b) for b in bits), k))
    table = np.concatenate([values, np.array([c[1] for c in copies], dtype=np.uint64)])
    found = {tuple(p) for p in perceptual.near_pairs(table, 8).tolist()}
    for offset, (base, _, k) in enumerate(copies):
        assert ((base, len(values) + offset) in found) == (k <= 8), (base, k)
    # every reported pair really is within 8 bits
    pairs = np.array(sorted(found))
    assert (np.bitwise_count(table[pairs[:, 0]] ^ table[pairs[:, 1]]) <= 8).all()


def test_to_uint64_round_trips_hex() -> None:
    assert to_uint64(["ffffffffffffffff", "0000000000000001"]).tolist() == [2**64 - 1, 1]
