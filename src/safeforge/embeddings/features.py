"""Per-record features for dedup, quality and the probe judge, all through the row cache.

query_emb and description_emb: MiniLM (384-d, unit length); image_emb: open_nsfw pooled
features (1024-d, raw: centre before cosine); phash: 64-bit perceptual hash as 16 hex digits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from safeforge import io
from safeforge.cache import RowCache, cache_key
from safeforge.dedup.perceptual import phash
from safeforge.embeddings.text import TextEncoder, encode_cached
from safeforge.perception.describe import compose_description, load_rgb, nsfw_cached, ocr_cached

# the probe judge's inputs, as record_features and item_features make them
EMB_COLUMNS = ("image_emb", "description_emb", "query_emb")


def phash_cached(images: pl.DataFrame, cache: RowCache) -> list[str]:
    return cache.map(
        images.select("image_id", "path").to_dicts(),
        key_fn=lambda r: cache_key(kind="phash", version=1, image_id=r["image_id"]),
        compute=lambda rows: [phash(load_rgb(r["path"])) for r in rows],
        encode=str.encode,
        decode=bytes.decode,
        desc="phash",
    )


def record_features(
    records: pl.DataFrame,
    descriptions: pl.DataFrame,
    images: pl.DataFrame,
    encoder: TextEncoder,
    nsfw: Any,
    cache: RowCache,
    batch_size: int,
) -> pl.DataFrame:
    used = images.filter(pl.col("image_id").is_in(records["image_id"].unique().implode())).sort(
        "image_id"
    )
    _, image_emb = nsfw_cached(used, nsfw, cache, batch_size)
    hashes = phash_cached(used, cache)
    described = used.select("image_id").join(descriptions, on="image_id", how="left")
    description_emb = encode_cached(encoder, described["description"].to_list(), cache, batch_size)
    per_image = pl.DataFrame(
        {
            "image_id": used["image_id"],
            "description_emb": description_emb,
            "image_emb": image_emb.astype(np.float32),
            "phash": hashes,
        }
    )
    query_emb = encode_cached(encoder, records["query"].to_list(), cache, batch_size)
    return (
        records.select("record_id", "image_id")
        .with_columns(pl.Series("query_emb", query_emb))
        .join(per_image, on="image_id", how="left")
        .select("record_id", "image_id", "query_emb", "description_emb", "image_emb", "phash")
    )


def item_features(
    items: pl.DataFrame,
    encoder: TextEncoder,
    nsfw: Any,
    reader: Any | None,
    cache: RowCache,
    batch_size: int,
) -> pl.DataFrame:
    """The probe judge's inputs for benchmark items (item_id, image_path, text), made the way
    `record_features` makes them for records: images keyed by content, so a benchmark image
    that is also a dataset image is never recomputed.

    With no captioner on CPU the description is the image's visible text (OCR) alone; `reader`
    None skips OCR. Dataset records carry a caption too: the judge sees that shift.
    """
    images = (
        items.select(pl.col("image_path").alias("path"))
        .unique(maintain_order=True)
        .with_columns(image_id=pl.col("path").map_elements(io.sha256_file, return_dtype=pl.String))
    )
    ocr_text = (
        [o["text"] for o in ocr_cached(images, reader, cache)] if reader else [""] * images.height
    )
    descriptions = [compose_description("", t) for t in ocr_text]
    _, image_emb = nsfw_cached(images, nsfw, cache, batch_size)
    per_image = pl.DataFrame(
        {
            "image_path": images["path"],
            "description_emb": encode_cached(encoder, descriptions, cache, batch_size),
            "image_emb": image_emb.astype(np.float32),
        }
    )
    query_emb = encode_cached(encoder, items["text"].to_list(), cache, batch_size)
    return (
        items.select("item_id", "image_path")
        .with_columns(pl.Series("query_emb", query_emb))
        .join(per_image, on="image_path", how="left", maintain_order="left")
        .select("item_id", "query_emb", "description_emb", "image_emb")
    )
