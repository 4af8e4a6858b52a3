"""MinHash signatures of query text: the feature text dedup (dedup/minhash.py) bands.

Signatures are datasketch's (`MinHash.generator`: one hashing state for every text) over
character n-grams of the normalised text: short queries change few characters when re-worded,
where word n-grams would change most of theirs. Normalisation (case, Unicode form, punctuation,
whitespace) is the one exact text dedup compares too.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
from datasketch import MinHash

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def shingles(text: str, ngram: int) -> list[bytes]:
    """Distinct character n-grams of the normalised text (the whole text when shorter)."""
    text = normalize(text)
    grams = {text[i : i + ngram] for i in range(max(1, len(text) - ngram + 1))}
    return [g.encode() for g in grams]


def signatures(texts: list[str], num_perm: int, ngram: int, seed: int) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures."""
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    batches = (shingles(t, ngram) for t in texts)
    for i, m in enumerate(MinHash.generator(batches, num_perm=num_perm, seed=seed)):
        out[i] = m.hashvalues
    return out
