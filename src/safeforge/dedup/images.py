"""Image duplicate clusters: candidate pairs from cheap matchers, each verified before it links.

Candidates (any one makes a pair a candidate):
- image_exact: the same decoded pixels (pixel_sha256), whatever the file format; not verified;
- image_phash: perceptual hashes within `phash_max_distance` bits (resize, re-encode);
- image_layout: 16x16 layout vectors with cosine >= `layout_min_cosine` (crop, rotation,
  captions), off when None;
- image_semantic: embedding cosine >= `semantic_min_cosine`, off when None.

Every candidate but an exact one is verified on the images' thumbnails (dedup/verify.py) and
links only with a match score >= `min_match_score`; one that scores below
`keypoints_below_score` must also share >= `min_inlier_share` of its ORB keypoints in one
geometry (dedup/keypoints.py: this opens the two images). Clusters grow from the strongest links
down; a link that would join two clusters of several images each joins them only if the
clusters' first members match as well, so one weak link cannot chain two unrelated clusters.

The keeper of a cluster is its best image: the most pixels, then the sharpest (variance of the
Laplacian), then the lowest image_id. A non-keeper's `dup_method` is the strongest candidate
source among its links (exact, phash, layout, semantic) and `dup_score` its best match score.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np
import polars as pl

from safeforge.dedup import keypoints, perceptual, semantic, verify
from safeforge.dedup.clusters import labelled_keepers
from safeforge.images.thumb import as_array

METHODS = ("image_exact", "image_phash", "image_layout", "image_semantic")  # strongest first
KEEPER_PREFERENCE = (pl.col("width") * pl.col("height"), pl.col("blur_variance"))


def exact_pairs(values: pl.Series) -> np.ndarray:
    """Each row with equal values paired with the first such row."""
    frame = pl.DataFrame({"v": values}).with_row_index("i")
    first = frame.group_by("v").agg(pl.col("i").min().alias("first"))
    pairs = frame.join(first, on="v").filter(pl.col("i") != pl.col("first"))
    return pairs.select("first", "i").to_numpy().astype(np.int64).reshape(-1, 2)


def candidate_pairs(
    images: pl.DataFrame,
    thumbs: np.ndarray,
    phash_max_distance: int,
    layout_min_cosine: float | None,
    semantic_min_cosine: float | None,
    candidates_per_image: int,
) -> pl.DataFrame:
    """Unique pairs (a < b) with the strongest source that proposed each (its rank in METHODS).

    Each matcher proposes at most `candidates_per_image` partners per image, its closest (a
    pair stays while it is among the closest of either image): a family of look-alikes (slides,
    icons) then costs verification per image, not per pair of them. Exact pairs always stay.
    """
    hashes = perceptual.to_uint64(images["phash"].to_list())
    near = perceptual.near_pairs(hashes, phash_max_distance)
    distance = np.bitwise_count(hashes[near[:, 0]] ^ hashes[near[:, 1]]).astype(np.float32)
    found = [
        (0, exact_pairs(images["pixel_sha256"])),
        (1, _closest(near, -distance, candidates_per_image)),
    ]
    if layout_min_cosine is not None:
        vectors = verify.layout_vectors(thumbs)
        pairs = semantic.near_pairs(vectors, layout_min_cosine, top_k=candidates_per_image)
        found.append((2, pairs))
    if semantic_min_cosine is not None:
        emb = semantic.normalise(images["semantic_emb"].to_numpy())
        pairs = semantic.near_pairs(emb, semantic_min_cosine, top_k=candidates_per_image)
        found.append((3, pairs))
    frames = [
        pl.DataFrame({"a": p[:, 0], "b": p[:, 1], "rank": np.full(len(p), rank)})
        for rank, p in found
        if len(p)
    ]
    if not frames:
        return pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64, "rank": pl.Int64})
    pairs = pl.concat(frames).with_columns(
        a=pl.min_horizontal("a", "b"), b=pl.max_horizontal("a", "b")
    )
    return pairs.group_by("a", "b").agg(pl.col("rank").min()).sort("a", "b")


def _closest(pairs: np.ndarray, closeness: np.ndarray, k: int) -> np.ndarray:
    """The pairs among the `k` closest of either of their images (ties broken by order)."""
    if len(pairs) <= k:
        return pairs
    frame = pl.DataFrame({"a": pairs[:, 0], "b": pairs[:, 1], "c": closeness})
    place = pl.col("c").rank("ordinal", descending=True)
    kept = frame.filter((place.over("a") <= k) | (place.over("b") <= k))
    return kept.select("a", "b").to_numpy()


class Verifier:
    """Which pairs of images match: the thumbnail score, then keypoints where it is unsure."""

    def __init__(
        self,
        thumbs: np.ndarray,
        paths: list[str] | None,
        min_match_score: float,
        keypoints_below_score: float | None,
        min_inlier_share: float,
        workers: int = 1,
    ) -> None:
        if keypoints_below_score is not None and paths is None:
            raise ValueError("dedup.keypoints_below_score is set: the images' paths are needed")
        self.thumbs, self.paths = thumbs, paths
        self.min_score, self.unsure_below = min_match_score, keypoints_below_score
        self.min_share, self.workers = min_inlier_share, workers
        self._keypoints: dict[int, keypoints.Keypoints] = {}

    def __call__(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, matched) per pair."""
        score = verify.pair_scores(self.thumbs, pairs)
        matched = score >= self.min_score
        if self.unsure_below is not None:
            unsure = np.flatnonzero(matched & (score < self.unsure_below))
            shares = keypoints.pair_shares(pairs[unsure], self.paths, self._keypoints, self.workers)
            # too few keypoints to judge (a near-blank image): unsure stays unmatched
            matched[unsure] = [s is not None and s >= self.min_share for s in shares]
        return score, matched


def linked_pairs(candidates: pl.DataFrame, verifier: Verifier) -> pl.DataFrame:
    """The candidates that link: exact ones, and verified ones; strongest first (exact, then by
    score)."""
    pairs = candidates.select("a", "b").to_numpy()
    score = np.ones(len(pairs), dtype=np.float32)
    matched = np.ones(len(pairs), dtype=bool)
    check = (candidates["rank"] > 0).to_numpy()
    score[check], matched[check] = verifier(pairs[check])
    linked = candidates.with_columns(score=pl.Series(score)).filter(pl.Series(matched))
    return linked.sort(
        pl.col("rank") > 0, "score", "a", "b", descending=[False, True, False, False]
    )


def guarded_components(n: int, links: pl.DataFrame, verifier: Verifier) -> np.ndarray:
    """Component label per image from `links` in order; two multi-image components join only
    when their first members match too (one check per such join)."""
    parent = np.arange(n)
    size = np.ones(n, dtype=np.int64)
    anchor = np.arange(n)  # the member a component started from

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, rank in links.select("a", "b", "rank").iter_rows():
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        joins_clusters = rank > 0 and size[ra] > 1 and size[rb] > 1
        if joins_clusters and not verifier(np.array([[anchor[ra], anchor[rb]]]))[1][0]:
            continue
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        parent[rb], size[ra] = ra, size[ra] + size[rb]
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def image_clusters(
    images: pl.DataFrame,
    phash_max_distance: int,
    layout_min_cosine: float | None,
    semantic_min_cosine: float | None,
    min_match_score: float,
    keypoints_below_score: float | None,
    min_inlier_share: float,
    candidates_per_image: int,
    workers: int = 1,
) -> pl.DataFrame:
    """image_id -> image_cluster (its keeper's id), dup_method ("none" for keepers) and
    dup_score (its best link's match score; null for keepers).

    `images` has image_id, pixel_sha256, phash, thumb, width, height, blur_variance, path (the
    image file) when keypoints_below_score is set, and semantic_emb (an embedding per image)
    when semantic_min_cosine is set. `workers`: processes for the keypoint checks (where the
    platform forks); it changes how fast, never what.
    """
    images = images.sort("image_id")
    thumbs = as_array(images["thumb"].to_list())
    candidates = candidate_pairs(
        images,
        thumbs,
        phash_max_distance,
        layout_min_cosine,
        semantic_min_cosine,
        candidates_per_image,
    )
    paths = images["path"].to_list() if "path" in images.columns else None
    verifier = Verifier(
        thumbs, paths, min_match_score, keypoints_below_score, min_inlier_share, workers
    )
    links = linked_pairs(candidates, verifier)
    component = guarded_components(images.height, links, verifier)
    keeper = labelled_keepers(images, "image_id", component, KEEPER_PREFERENCE)
    # per image, its links that held (both ends in one cluster): strongest source, best score
    held = links.filter(
        pl.Series(component[links["a"].to_numpy()] == component[links["b"].to_numpy()])
    )
    ends = pl.concat(
        [
            held.select(i="a", rank="rank", score="score"),
            held.select(i="b", rank="rank", score="score"),
        ]
    )
    best = ends.group_by("i").agg(pl.col("rank").min(), pl.col("score").max())
    out = (
        pl.DataFrame(
            {"i": np.arange(images.height), "image_id": images["image_id"], "image_cluster": keeper}
        )
        .join(best, on="i", how="left")
        .sort("i")
    )
    is_keeper = pl.col("image_cluster") == pl.col("image_id")
    return out.select(
        "image_id",
        "image_cluster",
        dup_method=pl.when(is_keeper)
        .then(pl.lit("none"))
        .otherwise(pl.col("rank").replace_strict(dict(enumerate(METHODS)), default=None)),
        dup_score=pl.when(is_keeper).then(None).otherwise(pl.col("score")),
    )


# the dedup keys image dedup reads (conf/config.yaml; the text_* keys are for queries), and those
# that may be null (that check off), read from image_clusters itself so the two cannot drift
_SIGNATURE = inspect.signature(image_clusters).parameters
IMAGE_PARAMS = tuple(k for k in _SIGNATURE if k not in ("images", "workers"))
NULLABLE = frozenset(k for k in IMAGE_PARAMS if "None" in str(_SIGNATURE[k].annotation))


def image_params(section: Mapping) -> dict:
    """The image keys of the conf `dedup` section; a value that is not a number (or null where
    that turns a check off) raises ValueError."""
    params = {k: section[k] for k in IMAGE_PARAMS}
    for key, value in params.items():
        if value is None and key in NULLABLE:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            expected = "a number" + (" or null" if key in NULLABLE else "")
            raise ValueError(f"dedup.{key} must be {expected}, got {value!r}")
    return params
