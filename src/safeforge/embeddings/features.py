"""Per-record features for dedup, quality and the probe judge, all through the row cache.

query_emb and description_emb: MiniLM (384-d, unit length); image_emb: open_nsfw pooled
features (1024-d, raw: centre before cosine); phash: 64-bit perceptual hash as 16 hex digits;
query_minhash: MinHash signature of the query (dedup/minhash.py); query_image_lift: how much
closer the query is to its own image's description than to the average description;
text_only_p_unsafe: an image-free judge's out-of-fold P(unsafe) (embeddings/text_only.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from safeforge import io
from safeforge.cache import RowCache, cache_key
from safeforge.determinism import stable_scores
from safeforge.embeddings import minhash
from safeforge.embeddings.images import image_features_cached
from safeforge.embeddings.text import TextEncoder, encode_cached
from safeforge.embeddings.text_only import text_only_p_unsafe
from safeforge.perception.nsfw import nsfw_cached
from safeforge.perception.ocr import compose_description, ocr_cached

# the probe judge's inputs, as record_features and item_features make them
EMB_COLUMNS = ("image_emb", "description_emb", "query_emb")


def minhash_cached(texts: list[str], cache: RowCache, params: dict[str, int]) -> np.ndarray:
    """(n, num_perm) uint32 signatures; params: num_perm, ngram, seed."""
    rows = cache.map(
        texts,
        key_fn=lambda t: cache_key(kind="minhash", version=1, text=t, **params),
        compute=lambda batch: list(minhash.signatures(batch, **params)),
        encode=lambda v: np.asarray(v, dtype=np.uint32).tobytes(),
        decode=lambda b: np.frombuffer(b, dtype=np.uint32),
        batch_size=4096,
        desc="minhash",
    )
    return np.stack(rows) if rows else np.zeros((0, params["num_perm"]), dtype=np.uint32)


def image_lift(query_emb: np.ndarray, description_emb: np.ndarray, mean_description: np.ndarray):
    """cos(query, own description) - cos(query, the mean description direction)."""
    direction = mean_description / max(float(np.linalg.norm(mean_description)), 1e-12)
    return (query_emb * description_emb).sum(axis=1) - query_emb @ direction


def record_features(
    records: pl.DataFrame,
    descriptions: pl.DataFrame,
    images: pl.DataFrame,
    encoder: TextEncoder,
    nsfw: Any,
    cache: RowCache,
    params: dict[str, Any],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-record features, per-image features); params: embed.batch_size, embed.minhash."""
    batch_size = params["batch_size"]
    used = images.filter(pl.col("image_id").is_in(records["image_id"].unique().implode())).sort(
        "image_id"
    )
    _, image_emb = nsfw_cached(used, nsfw, cache, batch_size)
    per_image = image_features_cached(used, cache).with_columns(
        pl.Series("semantic_emb", image_emb.astype(np.float16))
    )
    described = used.select("image_id").join(descriptions, on="image_id", how="left")
    description_emb = encode_cached(encoder, described["description"].to_list(), cache, batch_size)
    image_columns = pl.DataFrame(
        {
            "image_id": used["image_id"],
            "description_emb": description_emb,
            "image_emb": image_emb.astype(np.float32),
            "phash": per_image["phash"],
        }
    )
    query_emb = encode_cached(encoder, records["query"].to_list(), cache, batch_size)
    features = (
        records.select("record_id", "image_id")
        .with_columns(
            pl.Series("query_emb", query_emb),
            pl.Series(
                "query_minhash",
                minhash_cached(records["query"].to_list(), cache, params["minhash"]),
            ),
        )
        .join(image_columns, on="image_id", how="left", maintain_order="left")
    )
    own = np.stack(features["description_emb"].to_numpy()) if features.height else description_emb
    lift = image_lift(query_emb, own, description_emb.mean(axis=0)) if features.height else []
    p_text = text_only_p_unsafe(query_emb, records["label"].to_list(), records["query"].to_list())
    # stored at SCORE_DECIMALS, then float32 as the schema says: the matmul and the logistic
    # regression round differently in the last bits on different CPUs (determinism.py)
    features = features.with_columns(
        pl.Series("query_image_lift", stable_scores(lift), dtype=pl.Float32),
        pl.Series("text_only_p_unsafe", stable_scores(p_text), dtype=pl.Float32),
    )
    return features.select(
        "record_id",
        "image_id",
        "query_emb",
        "description_emb",
        "image_emb",
        "phash",
        "query_minhash",
        "query_image_lift",
        "text_only_p_unsafe",
    ), per_image


def variant_features(
    variants: pl.DataFrame,
    descriptions: pl.DataFrame,
    encoder: TextEncoder,
    nsfw: Any,
    cache: RowCache,
    batch_size: int,
) -> pl.DataFrame:
    """The probe judge's inputs (EMB_COLUMNS) for rows whose images describe() has described
    (record_id, image_id, image_path, query; descriptions: image_id, description): the
    augment stage's variants, embedded as `record_features` embeds records."""
    images = (
        variants.select("image_id", pl.col("image_path").alias("path"))
        .unique("image_id", maintain_order=True)
        .join(descriptions.select("image_id", "description"), on="image_id", how="left")
    )
    inputs = _pair_inputs(
        variants, "query", "image_id", images, images["description"].to_list(),
        encoder, nsfw, cache, batch_size,
    )  # fmt: skip
    return variants.select("record_id").hstack(inputs)


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
    inputs = _pair_inputs(
        items, "text", "image_path", images.with_columns(image_path=pl.col("path")),
        descriptions, encoder, nsfw, cache, batch_size,
    )  # fmt: skip
    return items.select("item_id").hstack(
        inputs.select("query_emb", "description_emb", "image_emb")
    )


def _pair_inputs(
    rows: pl.DataFrame,
    text: str,
    key: str,
    images: pl.DataFrame,
    descriptions: list[str],
    encoder: TextEncoder,
    nsfw: Any,
    cache: RowCache,
    batch_size: int,
) -> pl.DataFrame:
    """EMB_COLUMNS, a row per row of `rows`: its `text` embedded, and its image's description
    and pixels. `images` (one per `key`, with `path`) and `descriptions` are aligned."""
    _, image_emb = nsfw_cached(images, nsfw, cache, batch_size)
    per_image = pl.DataFrame(
        {
            key: images[key],
            "description_emb": encode_cached(encoder, descriptions, cache, batch_size),
            "image_emb": image_emb.astype(np.float32),
        }
    )
    query_emb = encode_cached(encoder, rows[text].to_list(), cache, batch_size)
    return (
        rows.select(key)
        .with_columns(pl.Series("query_emb", query_emb))
        .join(per_image, on=key, how="left", maintain_order="left")
        .select(*EMB_COLUMNS)
    )
