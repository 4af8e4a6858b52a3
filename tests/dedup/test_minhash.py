"""MinHash signatures are datasketch's; the banded pair search matches brute force on the
estimated Jaccard, and big buckets stay linear."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from datasketch import MinHash
from helpers import PARAMS

from safeforge.dedup.minhash import lsh_bands, near_duplicate_pairs
from safeforge.embeddings.minhash import shingles
from safeforge.embeddings.minhash import signatures as _signatures

MINHASH = PARAMS["embed"]["minhash"]


def signatures(texts: list[str]):
    return _signatures(texts, **MINHASH)


WORDS = [
    "how", "long", "can", "i", "stay", "in", "the", "garage", "with", "car", "running",
    "kitchen", "knife", "stove", "gas", "leak", "bridge", "river", "pool", "ladder", "roof",
    "battery", "charger", "candle", "curtain", "medicine", "cabinet", "toddler", "dog",
]  # fmt: skip


def corpus(seed: int, n_base: int = 200) -> list[str]:
    rng = random.Random(seed)
    base = [" ".join(rng.choices(WORDS, k=12)) for _ in range(n_base)]
    copies = []
    for text in base[: n_base // 2]:
        words = text.split()
        k = rng.randrange(len(words))
        variant = rng.choice(
            [
                [*words[:k], "really", *words[k:]],  # a filler word
                words[:k] + words[k + 1 :],  # a word dropped
                [w.upper() if i == k else w for i, w in enumerate(words)],  # case only
            ]
        )
        copies.append(" ".join(variant) + rng.choice(["", "?", "!"]))
    return base + copies


def test_signatures_are_datasketch_minhash_of_the_shingles() -> None:
    texts = ["How long can I stay in here?", "a", "", "Is this mushroom safe to eat?"]
    got = _signatures(texts, num_perm=64, ngram=5, seed=3)
    assert got.shape == (4, 64) and got.dtype == np.uint32
    for text, row in zip(texts, got, strict=True):
        expected = MinHash(num_perm=64, seed=3)
        expected.update_batch(shingles(text, 5))
        assert row.tolist() == expected.hashvalues.tolist()


def test_shingles_ignore_case_punctuation_and_spacing() -> None:
    assert shingles("Hello,   WORLD!", 5) == shingles("hello world", 5)
    assert shingles("abc", 5) == [b"abc"]  # shorter than n: the whole text


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.9])
def test_pairs_match_brute_force_on_estimated_jaccard(threshold: float) -> None:
    texts = corpus(seed=int(threshold * 10))
    sigs = signatures(texts)
    brute = {
        (i, j)
        for i, j in itertools.combinations(range(len(texts)), 2)
        if (sigs[i] == sigs[j]).mean() >= threshold
    }
    got = {tuple(p) for p in near_duplicate_pairs(sigs, threshold).tolist()}
    assert got <= brute  # verified: never a pair below the threshold
    assert len(brute) >= 30  # the planted copies make this non-trivial
    assert len(got) >= 0.97 * len(brute)  # LSH weighted towards recall misses almost none


def test_reworded_copies_are_found() -> None:
    texts = corpus(seed=1)
    pairs = {tuple(p) for p in near_duplicate_pairs(signatures(texts), 0.7).tolist()}
    found = sum((i, 200 + i) in pairs for i in range(100))
    assert found >= 90


def test_band_choice_comes_from_datasketch() -> None:
    bands, rows = lsh_bands(0.7, 128)
    assert bands * rows <= 128 and bands > 1 and rows > 1
    # a higher threshold asks for longer bands
    assert lsh_bands(0.9, 128)[1] > rows


def test_one_huge_bucket_stays_linear() -> None:
    # 20k copies of one text: a star per bucket, not 200M pairs
    sigs = signatures(["the very same question about the garage"] * 20_000)
    pairs = near_duplicate_pairs(sigs, 0.7)
    assert len(pairs) == 19_999
    assert set(pairs[:, 0].tolist()) == {0}


def test_edge_cases() -> None:
    assert near_duplicate_pairs(signatures([]), 0.7).shape == (0, 2)
    assert near_duplicate_pairs(signatures(["only one"]), 0.7).shape == (0, 2)
