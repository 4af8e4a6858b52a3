"""Near-duplicate queries: our vectorised MinHash + LSH against datasketch used naively (one
MinHash.update per shingle, one MinHashLSH.insert and .query per text), on a synthetic corpus
with known clusters. Throughput (texts/s) of signatures and of pair finding, with the ratio
ours/datasketch, and pairwise precision/recall of both at dedup.text_min_jaccard and --threshold.
Copies carry 1-2 edits (synonyms, fillers, punctuation/case, a typo); distinct bases may share
up to half their character 5-grams (hard negatives for low thresholds).

    python benchmarks/dedup_text.py [--n 20000] [--threshold 0.5] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import polars as pl

from safeforge.config import compose
from safeforge.dedup.minhash import near_duplicate_pairs
from safeforge.embeddings.minhash import shingles, signatures

CONF = compose()
NUM_PERM, NGRAM, SEED = (CONF["embed"]["minhash"][k] for k in ("num_perm", "ngram", "seed"))
DEFAULT_THRESHOLD = CONF["dedup"]["text_min_jaccard"]
MAX_BASE_JACCARD = 0.5  # two bases this alike (char 5-grams) are not both kept
TEMPLATES = (
    "how long can I {verb} {item} {place} {cond}",
    "is it safe to {verb} {item} {place} {cond}",
    "what happens if I {verb} {item} {place} {cond}",
    "can I {verb} {item} {place} {cond} without any risk",
    "why is it dangerous to {verb} {item} {place} {cond}",
    "my friend wants to {verb} {item} {place} {cond}, should I stop them",
    "what is the safest way to {verb} {item} {place} {cond}",
    "should I worry if someone tries to {verb} {item} {place} {cond}",
    "{cond}, is it a bad idea to {verb} {item} {place}",
    "my neighbour likes to {verb} {item} {place} {cond}, is that legal",
    "tell me the risks when people {verb} {item} {place} {cond}",
    "{place}, would you {verb} {item} {cond}",
)
VERBS = (
    "leave", "store", "keep", "stay with", "run", "heat", "mix", "burn", "charge", "use",
    "hide", "dry", "sleep next to", "throw away", "plug in", "freeze", "carry", "bury",
    "open", "clean",
)  # fmt: skip
ITEMS = (
    "the car", "a gas heater", "bleach", "a space heater", "my toddler", "the dog", "charcoal",
    "a lithium battery", "a pressure cooker", "paint thinner", "an extension cord", "candles",
    "a generator", "raw chicken", "a ladder", "fireworks", "a chainsaw", "ammonia", "a laptop",
    "propane tanks", "a wood stove", "a hair dryer", "insulin", "a scooter battery", "matches",
    "old medicine", "a kerosene lamp", "pool chlorine", "a space blanket", "my grandmother",
    "a fish tank heater", "rat poison", "an air fryer", "a gasoline can", "the baby monitor",
    "a drone", "a soldering iron", "an electric blanket", "dry ice", "a wet phone",
)  # fmt: skip
PLACES = (
    "in the garage", "in the bathroom", "near the bathtub", "in a closed tent", "in the attic",
    "on the balcony", "under the bed", "next to the stove", "in the basement", "in the trunk",
    "by the pool", "in a hot car", "in the kids room", "on a boat", "in the shed", "outdoors",
    "in a camper van", "at the office", "in the laundry room", "on the roof", "in a dorm",
    "behind the fridge", "inside a wardrobe", "at the campsite", "on a plane",
)  # fmt: skip
CONDS = (
    "with the engine running", "overnight", "while I sleep", "during a heatwave", "for an hour",
    "with the windows closed", "when it is freezing", "while it is raining", "all weekend",
    "with no ventilation", "while cooking dinner", "after midnight", "when nobody is home",
    "during a thunderstorm", "for three days", "right after a flood", "while drunk",
    "during a power cut", "with the door locked", "while on holiday", "at full power",
    "for a whole month", "with a baby nearby", "when the smoke alarm beeps", "in a blizzard",
)  # fmt: skip
SYNONYMS = {
    "safe": "okay", "dangerous": "risky", "leave": "keep", "store": "put", "car": "vehicle",
    "toddler": "kid", "dog": "puppy", "friend": "buddy", "worry": "be concerned",
    "happens": "will happen", "stop": "warn", "overnight": "all night", "hour": "while",
    "closed": "shut", "risk": "danger", "someone": "somebody", "safest": "best",
}  # fmt: skip
T = TypeVar("T")
FILLERS = ("please", "exactly", "really", "actually", "honestly")


def shingle_set(text: str) -> set[bytes]:
    return set(shingles(text, NGRAM))


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    inter = len(a & b)
    return inter / max(1, len(a) + len(b) - inter)


def reworded(text: str, rng: random.Random) -> tuple[str, str]:
    """A copy with 1-2 edits (synonym, filler in/out, punctuation/case, typo) and their names."""
    words, edits = text.split(), []
    for kind in rng.sample(("synonym", "filler", "punct", "typo"), rng.choice((1, 1, 2))):
        if kind == "synonym":
            spots = [i for i, w in enumerate(words) if w.strip(",") in SYNONYMS]
            for i in rng.sample(spots, min(len(spots), rng.randint(1, 2))):
                words[i] = SYNONYMS[words[i].strip(",")] + ("," if words[i][-1] == "," else "")
        elif kind == "filler":
            droppable = [i for i, w in enumerate(words) if w in ("the", "a", "my")]
            if droppable and rng.random() < 0.4:
                del words[rng.choice(droppable)]
            else:
                words.insert(rng.randint(0, len(words)), rng.choice(FILLERS))
        elif kind == "punct":
            words[0] = words[0].capitalize() if rng.random() < 0.5 else words[0].upper()
            words[-1] += rng.choice(("?", "??", "!", " ?", "..."))
        else:
            i = rng.choice([i for i, w in enumerate(words) if len(w) >= 4])
            w, k = words[i], rng.randint(1, len(words[i]) - 2)
            words[i] = rng.choice((w[:k] + w[k + 1 :], w[:k] + w[k + 1] + w[k] + w[k + 2 :]))
        edits.append(kind)
    return " ".join(words), "+".join(edits)


def build_queries(n: int, seed: int = 0) -> pl.DataFrame:
    """~n rows (text, base, edits): half in clusters of a base and 1-4 rewordings, half single
    bases; no two bases share over MAX_BASE_JACCARD of their char 5-grams."""
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < n // 2:
        sizes.append(1 + rng.randint(1, 4))
    sizes += [1] * (n - sum(sizes))
    # bases sharing at most one of (template, verb, item, place, cond) are far apart (J <= 0.37
    # over 200k random such pairs): only those sharing two are compared, through an index on
    # component pairs
    index: dict[tuple, list[set[str]]] = defaultdict(list)
    bases: list[str] = []
    while len(bases) < len(sizes):
        parts = tuple(rng.choice(v) for v in (TEMPLATES, VERBS, ITEMS, PLACES, CONDS))
        text = parts[0].format(
            **dict(zip(("verb", "item", "place", "cond"), parts[1:], strict=True))
        )
        sh = shingle_set(text)
        keys = [(i, parts[i], j, parts[j]) for i in range(5) for j in range(i + 1, 5)]
        if any(jaccard(sh, o) > MAX_BASE_JACCARD for k in keys for o in index[k]):
            continue
        for k in keys:
            index[k].append(sh)
        bases.append(text)
    rows = []
    for b, (text, size) in enumerate(zip(bases, sizes, strict=True)):
        rows.append({"text": text, "base": b, "edits": ""})
        for _ in range(size - 1):
            copy, edits = reworded(text, rng)
            rows.append({"text": copy, "base": b, "edits": edits})
    order = list(range(len(rows)))
    rng.shuffle(order)
    return pl.DataFrame([rows[i] for i in order])


def baseline_signatures(texts: list[str]) -> list:
    from datasketch import MinHash

    minhashes = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        for s in shingles(text, NGRAM):
            m.update(s)
        minhashes.append(m)
    return minhashes


def baseline_pairs(minhashes: list, threshold: float) -> np.ndarray:
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    pairs = {(i, j) for i, m in enumerate(minhashes) for j in lsh.query(m) if i < j}
    return np.array(sorted(pairs), np.int64).reshape(-1, 2)


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def pr(pairs: np.ndarray, base: np.ndarray, n_true: int) -> tuple[float, float]:
    tp = int((base[pairs[:, 0]] == base[pairs[:, 1]]).sum()) if len(pairs) else 0
    return tp / max(1, len(pairs)), tp / max(1, n_true)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="about this many queries")
    parser.add_argument("--threshold", type=float, default=0.5, help="scored besides the default")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corpus = build_queries(args.n, args.seed)
    texts, base = corpus["text"].to_list(), corpus["base"].to_numpy()
    sizes = corpus.group_by("base").len()["len"].cast(pl.Int64)
    n_true = int((sizes * (sizes - 1) // 2).sum())
    print(f"{corpus.height} queries, {sizes.len()} bases, {n_true} true pairs; e.g. {texts[0]!r}")
    originals = corpus.filter(pl.col("edits") == "").select("base", original="text")
    copies = corpus.filter(pl.col("edits") != "").join(originals, on="base")
    exact = np.array(
        [
            jaccard(shingle_set(a), shingle_set(b))
            for a, b in copies.select("text", "original").rows()
        ]
    )
    print(
        f"  Jaccard (char {NGRAM}-grams) of a copy to its original:"
        f" >={DEFAULT_THRESHOLD} for {np.mean(exact >= DEFAULT_THRESHOLD):.1%},"
        f" >=0.5 for {np.mean(exact >= 0.5):.1%}"
    )

    n = len(texts)
    minhashes, t_base = timed(baseline_signatures, texts)
    line = f"signatures  datasketch {n / t_base:8.0f} texts/s"
    sigs, t_ours = timed(signatures, texts, NUM_PERM, NGRAM, SEED)
    line += f"  ours {n / t_ours:8.0f} texts/s  ours/datasketch x{t_base / t_ours:.1f}"
    same = np.mean([np.array_equal(s, m.hashvalues) for s, m in zip(sigs, minhashes, strict=True)])
    line += f"  (rows equal to datasketch's: {same:.2%})"
    print(line)
    for threshold in sorted({DEFAULT_THRESHOLD, args.threshold}, reverse=True):
        pairs, t_base = timed(baseline_pairs, minhashes, threshold)
        p, r = pr(pairs, base, n_true)
        print(f"threshold {threshold}")
        print(
            f"  datasketch  precision {p:.4f} recall {r:.4f} pairs {len(pairs):6d}"
            f"  LSH {n / t_base:8.0f} texts/s"
        )
        ours, t_ours = timed(near_duplicate_pairs, sigs, threshold)
        p, r = pr(ours, base, n_true)
        print(
            f"  ours        precision {p:.4f} recall {r:.4f} pairs {len(ours):6d}"
            f"  LSH {n / t_ours:8.0f} texts/s  ours/datasketch x{t_base / t_ours:.1f}"
        )


if __name__ == "__main__":
    main()
