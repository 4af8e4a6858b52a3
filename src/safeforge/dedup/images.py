"""Image duplicate clusters from three matchers, joined into one graph.

- image_exact: the same decoded pixels (pixel_sha256), whatever the file format;
- image_phash: perceptual hashes within `phash_max_distance` bits (resize, re-encode);
- image_semantic: embedding cosine >= `semantic_min_cosine` (crop, brightness, overlaid text),
  off when None.

The keeper of a cluster is its best image: the most pixels, then the sharpest (variance of the
Laplacian), then the lowest image_id. A non-keeper's `dup_method` is the strongest matcher that
linked it (exact, then phash, then semantic).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from safeforge.dedup import perceptual, semantic
from safeforge.dedup.clusters import keepers

METHODS = ("image_exact", "image_phash", "image_semantic")  # strongest first
KEEPER_PREFERENCE = (pl.col("width") * pl.col("height"), pl.col("blur_variance"))


def exact_pairs(values: pl.Series) -> np.ndarray:
    """Each row with equal values paired with the first such row."""
    frame = pl.DataFrame({"v": values}).with_row_index("i")
    first = frame.group_by("v").agg(pl.col("i").min().alias("first"))
    pairs = frame.join(first, on="v").filter(pl.col("i") != pl.col("first"))
    return pairs.select("first", "i").to_numpy().astype(np.int64).reshape(-1, 2)


def image_clusters(
    images: pl.DataFrame, phash_max_distance: int, semantic_min_cosine: float | None
) -> pl.DataFrame:
    """image_id -> image_cluster (its keeper's id) and dup_method ("none" for keepers).

    `images` has image_id, pixel_sha256, phash, width, height, blur_variance, and semantic_emb
    (an embedding per image) when semantic_min_cosine is set.
    """
    images = images.sort("image_id")
    edges = {
        "image_exact": exact_pairs(images["pixel_sha256"]),
        "image_phash": perceptual.near_pairs(
            perceptual.to_uint64(images["phash"].to_list()), phash_max_distance
        ),
    }
    if semantic_min_cosine is not None and images.height > 1:
        emb = semantic.normalise(images["semantic_emb"].to_numpy())
        edges["image_semantic"] = semantic.near_pairs(emb, semantic_min_cosine)
    all_pairs = np.concatenate([p for p in edges.values()]).reshape(-1, 2)
    keeper = keepers(images, "image_id", all_pairs, KEEPER_PREFERENCE)
    ids = images["image_id"]
    # the strongest method on any edge of each image
    method = np.full(images.height, len(METHODS), dtype=np.int64)
    for rank, name in enumerate(METHODS):
        pairs = edges.get(name)
        if pairs is not None and len(pairs):
            touched = np.unique(pairs.ravel())
            method[touched] = np.minimum(method[touched], rank)
    names = np.array([*METHODS, "none"])[method]
    return pl.DataFrame(
        {
            "image_id": ids,
            "image_cluster": keeper,
            "dup_method": np.where((keeper == ids).to_numpy(), "none", names),
        }
    )
