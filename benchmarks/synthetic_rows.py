"""Synthetic inputs for the dedup and quality stages at any size, with planted duplicates.

Writes what `embed` and `generate` would: data/generate/records.parquet,
data/embed/features.parquet (record_id, image_id, query_minhash, query_image_lift,
text_only_p_unsafe; the wide embedding columns are left out: dedup and quality never read them)
and data/embed/image_features.parquet (semantic_emb as float16, as embed writes it; each image's
thumbnail a random blocky picture, a copy's its original's).

Planted, per image: 4% exact pixel copies, 4% pHash copies (1-6 bits flipped), 3% look-alike
copies (the same thumbnail, the embedding plus small noise: the layout matcher finds them); per record: 4% exact query repeats beside the same image,
4% re-worded repeats (a fifth of the signature values changed). Run as a script to write a
workspace: `python benchmarks/synthetic_rows.py /tmp/ws --rows 35000`.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import polars as pl

from safeforge import io
from safeforge.generate.records import RECORD_SCHEMA
from safeforge.images.thumb import THUMB_SIDE

CATEGORIES = ("physical_injury", "privacy", "hazardous_substances", "illegal_activity")
WORDS = [
    "how", "long", "can", "i", "stay", "in", "here", "with", "the", "engine", "running", "is",
    "this", "safe", "to", "drink", "where", "should", "hide", "it", "the", "kids", "garage",
    "kitchen", "bridge", "ladder", "roof", "battery", "stove", "knife", "river", "pool",
    "candle",
]  # fmt: skip
RECORDS_PER_IMAGE = 4
EMB_DIM = 1024
NUM_PERM = 128


def _hex(prefix: str, i: np.ndarray) -> list[str]:
    return [hashlib.sha256(f"{prefix}{k}".encode()).hexdigest() for k in i.tolist()]


def _sentences(rng: np.random.Generator, n: int, words: int) -> list[str]:
    picks = rng.integers(0, len(WORDS), (n, words))
    vocab = np.array(WORDS)
    return [" ".join(row).capitalize() + "?" for row in vocab[picks].tolist()]


def images_table(n_images: int, rng: np.random.Generator) -> pl.DataFrame:
    ids = np.arange(n_images)
    pixel = np.array(_hex("px", ids), dtype=object)
    phash = rng.integers(0, 2**63, n_images, dtype=np.uint64) * np.uint64(2)
    emb = rng.random((n_images, EMB_DIM), dtype=np.float32)
    k = n_images // 25
    exact, near, semantic = (rng.choice(n_images // 2, k, replace=False) for _ in range(3))
    top = n_images - np.arange(1, 3 * k + 1)  # copies overwrite the last rows
    pixel[top[:k]] = pixel[exact]
    phash[top[:k]] = phash[exact]
    emb[top[:k]] = emb[exact]
    flips = rng.integers(1, 7, k)
    masks = np.array([sum(1 << int(b) for b in rng.choice(64, f, replace=False)) for f in flips])
    phash[top[k : 2 * k]] = phash[near] ^ masks.astype(np.uint64)
    emb[top[k : 2 * k]] = emb[near]
    emb[top[2 * k :]] = emb[semantic] + 0.01 * rng.normal(size=(k, EMB_DIM)).astype(np.float32)
    cells = rng.integers(0, 256, (n_images, 16, 16), dtype=np.uint8)
    for copies, sources in ((top[:k], exact), (top[k : 2 * k], near), (top[2 * k :], semantic)):
        cells[copies] = cells[sources]
    thumbs = cells.repeat(THUMB_SIDE // 16, axis=1).repeat(THUMB_SIDE // 16, axis=2)
    return pl.DataFrame(
        {
            "image_id": _hex("img", ids),
            "pixel_sha256": pixel.tolist(),
            "phash": [f"{int(v):016x}" for v in phash],
            "thumb": [t.tobytes() for t in thumbs],
            "width": rng.integers(200, 2000, n_images),
            "height": rng.integers(200, 2000, n_images),
            "min_side": rng.uniform(60, 2000, n_images),
            "aspect_ratio": rng.uniform(1.0, 3.0, n_images),
            "blur_variance": rng.uniform(5.0, 500.0, n_images),
            "pixel_std": rng.uniform(1.0, 80.0, n_images),
            "semantic_emb": emb.astype(np.float16),
        }
    )


def records_table(images: pl.DataFrame, n: int, rng: np.random.Generator) -> pl.DataFrame:
    image_of = np.arange(n) // RECORDS_PER_IMAGE % images.height
    ids = np.array(_hex("rec", np.arange(n)))
    queries = np.array(_sentences(rng, n, 12), dtype=object)
    k = n // 25
    repeat = rng.choice(n - 1, k, replace=False)
    queries[repeat + 1] = queries[repeat]  # same image mostly: 4 records per image
    image_of[repeat + 1] = image_of[repeat]
    label = rng.choice(["unsafe", "safe"], n)
    label[repeat + 1] = label[repeat]
    image_ids = images["image_id"].to_numpy()[image_of]
    return pl.DataFrame(
        {
            "record_id": ids,
            "image_id": image_ids,
            "image_path": [f"data/ingest/images/{i}.png" for i in image_ids],
            "scenario": rng.choice(["garage", "kitchen", "bridge"], n),
            "category": rng.choice(CATEGORIES, n),
            "label": label,
            "query_type": np.where(label == "unsafe", "unsafe", "benign"),
            "query": queries.tolist(),
            "risk_analysis": _sentences(rng, n, 30),
            "guidance": _sentences(rng, n, 50),
            "pair_id": ids,
            "similarity": rng.uniform(0.3, 0.9, n),
            "generator": "synthetic@1",
        },
        schema=RECORD_SCHEMA,
    )


def features_table(records: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = records.height
    sigs = rng.integers(0, 2**32, (n, NUM_PERM), dtype=np.uint32)
    # exact repeats share a signature; a re-wording keeps four fifths of it
    first = records.with_row_index("i").group_by("query").agg(pl.col("i").min())
    index = records.join(first, on="query", how="left", maintain_order="left")["i"].to_numpy()
    sigs = sigs[index]
    reworded = rng.choice(n - 1, n // 25, replace=False)
    changed = rng.random((len(reworded), NUM_PERM)) < 0.2
    sigs[reworded + 1] = np.where(
        changed, rng.integers(0, 2**32, changed.shape, dtype=np.uint32), sigs[reworded]
    )
    return pl.DataFrame(
        {
            "record_id": records["record_id"],
            "image_id": records["image_id"],
            "query_minhash": sigs,
            "query_image_lift": rng.normal(0.05, 0.1, n).astype(np.float32),
            "text_only_p_unsafe": rng.uniform(0, 1, n).astype(np.float32),
        }
    )


def write_inputs(root: Path, n_records: int, seed: int = 0) -> dict[str, int]:
    """Write the three input tables under `root`; returns their row counts."""
    rng = np.random.default_rng(seed)
    images = images_table(max(2, n_records // RECORDS_PER_IMAGE), rng)
    records = records_table(images, n_records, rng)
    features = features_table(records, rng)
    io.write_parquet(root / "data/generate/records.parquet", records)
    io.write_parquet(root / "data/embed/features.parquet", features)
    io.write_parquet(root / "data/embed/image_features.parquet", images)
    return {"records": records.height, "images": images.height}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--rows", type=int, default=35_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_inputs(args.root, args.rows, args.seed))


if __name__ == "__main__":
    main()
