"""Dedup of the records table: image clusters first, then repeated queries.

1. Records whose image has no features (it failed ingest or embed) are dropped as
   `missing_features`; they cannot be compared, and nothing is lost silently.
2. Image clusters (dedup/images.py): records of a non-keeper image are dropped as
   `duplicate_of:<keeper image id>`.
3. Queries: the same normalised text (text_exact) or a MinHash-LSH near duplicate
   (text_minhash, Jaccard >= text_min_jaccard over character 5-grams) with the same label and
   in the same scope are one cluster. Scope `image` compares queries beside the same image
   cluster only: the same query beside a different image is a contrast pair, not a duplicate.
   Scope `dataset` compares every record. The keeper is the record with the longest guidance
   (the most specific answer), then the lowest record_id; the rest are dropped as
   `duplicate_of:<keeper record id>`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from safeforge.dedup import minhash
from safeforge.dedup.clusters import components
from safeforge.dedup.images import image_clusters, image_params
from safeforge.embeddings.minhash import normalize

SCOPES = ("image", "dataset")
Frame = pl.DataFrame | pl.LazyFrame
HELPERS = ("_qkey", "_text_cluster", "_scope", "_keeper", "_keeper_qkey", "dup_method")


def _ids(table: Frame, id_column: str, feature: str) -> pl.Series:
    found = table.lazy().filter(pl.col(feature).is_not_null()).select(id_column).collect()
    return found[id_column].implode()


def _missing(images: Frame, signatures: Frame) -> pl.Expr:
    has_image = pl.col("image_id").is_in(_ids(images, "image_id", "phash"))
    has_text = pl.col("record_id").is_in(_ids(signatures, "record_id", "query_minhash"))
    return (
        pl.when(~has_image)
        .then(pl.lit("missing_features:image"))
        .when(~has_text)
        .then(pl.lit("missing_features:query_minhash"))
    )


def text_clusters(table: pl.DataFrame, signatures: Frame, min_jaccard: float | None) -> pl.Series:
    """A cluster number per row: equal `_qkey`s share one; near-duplicate texts join theirs."""
    distinct = table.select("_qkey", "record_id").group_by("_qkey").agg(pl.col("record_id").min())
    distinct = distinct.sort("_qkey")
    pairs = np.zeros((0, 2), dtype=np.int64)
    if min_jaccard is not None and distinct.height > 1:
        # one signature per distinct text, read only now: a million of them is half a GiB
        wanted = signatures.lazy().filter(
            pl.col("record_id").is_in(distinct["record_id"].implode())
        )
        sigs = distinct.join(wanted.collect(), on="record_id", how="left", maintain_order="left")
        pairs = minhash.near_duplicate_pairs(sigs["query_minhash"].to_numpy(), min_jaccard)
        del sigs
    labels = distinct.select("_qkey", _text_cluster=pl.Series(components(distinct.height, pairs)))
    return table.join(labels, on="_qkey", how="left", maintain_order="left")["_text_cluster"]


def dedup(
    records: pl.DataFrame,
    images: Frame,
    signatures: Frame,
    params: Mapping[str, Any],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept records with image_cluster, dropped records with `reason` and `method`).

    `images`: per-image features (see image_clusters); `signatures`: record_id, query_minhash.
    Either may be lazy (`pl.scan_parquet`): only the rows and columns needed are read.
    """
    if params["text_scope"] not in SCOPES:
        raise ValueError(f"dedup.text_scope={params['text_scope']!r}: expected one of {SCOPES}")
    table = records.with_columns(_missing=_missing(images, signatures))
    dropped = [
        table.filter(pl.col("_missing").is_not_null()).with_columns(
            reason=pl.col("_missing"), method=pl.lit("missing_features")
        )
    ]
    table = table.filter(pl.col("_missing").is_null()).drop("_missing")

    semantic = params["semantic_min_cosine"] is not None
    used = (
        images.lazy()
        .filter(pl.col("image_id").is_in(table["image_id"].unique().implode()))
        .select(pl.all() if semantic else pl.exclude("semantic_emb"))
        .collect()
    )
    # the image files, for the keypoint check of unsure pairs (records name their image's path)
    paths = table.group_by("image_id").agg(path=pl.col("image_path").first())
    used = used.join(paths, on="image_id", how="left")
    # keypoint checks in a process per core: how fast, never what
    clusters_of = image_clusters(used, **image_params(params), workers=os.cpu_count() or 1)
    del used  # the embeddings are the largest thing dedup reads
    table = table.join(clusters_of.drop("dup_score"), on="image_id", how="left")
    dropped.append(
        table.filter(pl.col("image_cluster") != pl.col("image_id")).with_columns(
            reason=pl.format("duplicate_of:{}", "image_cluster"), method=pl.col("dup_method")
        )
    )
    table = table.filter(pl.col("image_cluster") == pl.col("image_id"))

    qkey = pl.col("query").map_elements(normalize, return_dtype=pl.String)
    table = table.with_columns(_qkey=qkey if params["normalize_text"] else pl.col("query"))
    table = table.with_columns(
        _text_cluster=text_clusters(table, signatures, params["text_min_jaccard"]),
        _scope=pl.col("image_cluster") if params["text_scope"] == "image" else pl.lit(""),
    )
    group = ("_scope", "label", "_text_cluster")
    table = table.sort(
        pl.col("guidance").str.len_chars(), "record_id", descending=[True, False]
    ).with_columns(
        _keeper=pl.col("record_id").first().over(group),
        _keeper_qkey=pl.col("_qkey").first().over(group),
    )
    dropped.append(
        table.filter(pl.col("record_id") != pl.col("_keeper")).with_columns(
            reason=pl.format("duplicate_of:{}", "_keeper"),
            method=pl.when(pl.col("_qkey") == pl.col("_keeper_qkey"))
            .then(pl.lit("text_exact"))
            .otherwise(pl.lit("text_minhash")),
        )
    )
    kept = table.filter(pl.col("record_id") == pl.col("_keeper")).sort("record_id")
    drop_table = pl.concat([d.drop(HELPERS, strict=False) for d in dropped], how="diagonal_relaxed")
    return kept.drop(HELPERS, strict=False), drop_table.drop("_missing", strict=False)
