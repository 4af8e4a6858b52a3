"""Stage augment: cross-modal variants of the train split (augment/variants.py), through the
same perception (OCR, NSFW features, a VLM description when one is configured) and the same
record features as the originals, all through the row cache. val and test keep only the
originals, so own_test measures what it measured before.

Inputs:  data/split/dataset.parquet, data/ingest/images.parquet, data/ingest/images/
Outputs: data/augment/images/, data/augment/variants.parquet (with the judge's input
         embeddings), metrics/augment.json
Params:  augment, describe, embed, prompts.system, prompts.describe, prompts.retry
"""

import logging
from pathlib import Path

import polars as pl

from safeforge.augment.variants import RENDERED_QUERY_TYPES, read_back, render_variants
from safeforge.cache import RowCache
from safeforge.config import stage_params
from safeforge.embeddings.features import variant_features
from safeforge.embeddings.text import TextEncoder
from safeforge.executors import use_configured_executor
from safeforge.metrics import StageAccounting
from safeforge.perception.describe import describe, describer_chat
from safeforge.perception.nsfw import NsfwModel
from safeforge.perception.ocr import OcrReader
from safeforge.stage import read_table, run, write_table

PARAMS = ("augment", "describe", "embed", "prompts.system", "prompts.describe", "prompts.retry")
OUT = Path("data/augment")
log = logging.getLogger("stages.augment")


def main() -> None:
    use_configured_executor()  # local or ray: where row-cache misses are computed
    p = stage_params(PARAMS)
    params = p["augment"]
    train = read_table("data/split/dataset.parquet").filter(pl.col("split") == "train")
    # accounted in source records, as generate accounts in images: each rendered record gives
    # several variants (variants_by_kind_label); a contrast record gives none
    acct = StageAccounting("augment")
    (OUT / "images").mkdir(parents=True, exist_ok=True)  # an output even when nothing is drawn
    sources = train if params["enabled"] else train.clear()
    if not params["enabled"]:
        log.info("augment: disabled (augment.enabled=false); no variants")
    acct.rows_in = sources.height
    skipped = sources.filter(~pl.col("query_type").is_in(RENDERED_QUERY_TYPES))
    if skipped.height:
        log.info("augment: %d contrast records not rendered (see variants.py)", skipped.height)
        acct.drop(skipped, "contrast_query_not_rendered", id_column="record_id")
    images = read_table("data/ingest/images.parquet")
    variants = render_variants(sources, images, params, OUT / "images")
    perception, embed = RowCache("perception"), RowCache("embed")
    nsfw = NsfwModel()
    # what a describer sees: a typeset card has no caption (as a benchmark image has none); a
    # captioned photo keeps its photo's caption
    captions = images.select(pl.col("image_id").alias("source_image_id"), "caption")
    variant_images = (
        variants.join(
            sources.select("record_id", pl.col("image_id").alias("source_image_id")),
            left_on="source_record_id",
            right_on="record_id",
        )
        .join(captions, on="source_image_id", how="left")
        .select(
            "image_id",
            pl.col("image_path").alias("path"),
            pl.when(pl.col("variant_kind") == "typographic")
            .then(pl.lit(""))
            .otherwise(pl.col("caption"))
            .alias("caption"),
        )
        .unique("image_id", keep="first", maintain_order=True)
    )
    reader = OcrReader(min_confidence=p["describe"]["ocr_min_confidence"])
    chat = describer_chat(p, perception)
    descriptions = describe(
        variant_images, reader, nsfw, perception, p["describe"]["batch_size"], chat
    )
    features = variant_features(
        variants, descriptions, TextEncoder(), nsfw, embed, p["embed"]["batch_size"]
    )
    variants = variants.join(
        descriptions.select("image_id", "ocr_text"), on="image_id", how="left"
    ).join(features, on="record_id", how="left", maintain_order="left")
    variants = variants.with_columns(
        pl.Series(
            "read_back",
            [
                read_back(r, o)
                for r, o in zip(variants["rendered_text"], variants["ocr_text"], strict=True)
            ],
            dtype=pl.Float64,
        )
    )
    acct.rows_out = sources.height - skipped.height
    acct.perf.update({f"perception_{k}": v for k, v in perception.stats().items()})
    acct.perf.update(embed.stats())
    by = variants.group_by("variant_kind", "label").len().sort("variant_kind", "label")
    acct.extra.update(
        enabled=params["enabled"],
        variants=variants.height,
        variants_by_kind_label={f"{k}/{lab}": n for k, lab, n in by.iter_rows()},
        # share of the rendered words OCR read back: what the probe can learn from
        mean_read_back=round(float(variants["read_back"].mean() or 0.0), 4),
    )
    write_table(OUT / "variants.parquet", variants, suite="variants")
    acct.finish("metrics/augment.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
