"""Dedup of the records table: image clusters first, then repeated queries within a cluster.

Image clusters join images with the same decoded pixels (exact) or perceptual hashes within
`phash_max_distance` bits (near). Records of a non-keeper image are dropped as
`duplicate_of:<keeper image id>`. Then, per image cluster, records asking the same normalised
query with the same label keep one (lowest record_id); the same query beside a different image
is not a duplicate: contrast pairs depend on exactly that.
"""

from __future__ import annotations

import polars as pl

from safeforge.dedup.clusters import clusters
from safeforge.dedup.perceptual import near_pairs
from safeforge.dedup.text import normalize


def image_clusters(images: pl.DataFrame, max_distance: int) -> pl.DataFrame:
    """image_id -> image_cluster (keeper id) and the method that matched (exact / phash / none)."""
    images = images.sort("image_id")
    ids = images["image_id"].to_list()
    by_pixels: dict[str, int] = {}
    exact = []
    for i, pixel_hash in enumerate(images["pixel_sha256"]):
        if pixel_hash in by_pixels:
            exact.append((by_pixels[pixel_hash], i))
        else:
            by_pixels[pixel_hash] = i
    near = near_pairs(images["phash"].to_list(), max_distance)
    keeper = clusters(ids, [*exact, *near])
    exact_members = {ids[j] for _, j in exact} | {ids[i] for i, _ in exact}
    return pl.DataFrame(
        {
            "image_id": ids,
            "image_cluster": [keeper[i] for i in ids],
            "dup_method": [
                "none"
                if keeper[i] == i
                else ("image_exact" if i in exact_members else "image_phash")
                for i in ids
            ],
        }
    )


def dedup(
    records: pl.DataFrame, images: pl.DataFrame, max_distance: int, normalize_text: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept records with image_cluster, dropped records with `reason`)."""
    clusters_of = image_clusters(images, max_distance)
    unknown = records.filter(~pl.col("image_id").is_in(clusters_of["image_id"].implode()))
    if unknown.height:
        raise ValueError(
            f"dedup: {unknown.height} records name images without features, "
            f"e.g. record {unknown['record_id'][0]} -> image {unknown['image_id'][0]}"
        )
    table = records.join(clusters_of, on="image_id", how="left")
    image_dup = table.filter(pl.col("image_cluster") != pl.col("image_id"))
    dropped = [
        image_dup.with_columns(
            reason=pl.format("duplicate_of:{}", "image_cluster"), method=pl.col("dup_method")
        )
    ]
    table = table.filter(pl.col("image_cluster") == pl.col("image_id"))

    key = (
        pl.col("query").map_elements(normalize, return_dtype=pl.String)
        if normalize_text
        else pl.col("query")
    )
    table = table.with_columns(_qkey=key).sort("record_id")
    table = table.with_columns(
        _keeper=pl.col("record_id").first().over("image_cluster", "label", "_qkey")
    )
    text_dup = table.filter(pl.col("record_id") != pl.col("_keeper")).with_columns(
        reason=pl.format("duplicate_of:{}", "_keeper"), method=pl.lit("text_exact")
    )
    kept = table.filter(pl.col("record_id") == pl.col("_keeper"))
    dropped.append(text_dup)
    helpers = ["_qkey", "_keeper", "dup_method"]
    drop_table = pl.concat([d.drop(helpers, strict=False) for d in dropped], how="diagonal")
    return kept.drop(helpers), drop_table
