"""Image and text quality checks, datatrove-style: a check adds its score columns to the table
and gives each row a drop reason or null. The first failing check (in CHECK order) names the
reason; every score column stays on the table so a user can see why a row went.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from PIL import Image
from scipy.ndimage import laplace

# Patterns for polars (Rust regex syntax; case-insensitive inline, as polars takes no flags).
# A refusal phrase with nothing specific after it is a bare refusal: it teaches over-refusal.
REFUSAL = (
    r"(?i)\b(i can(?:'|no)?t help|i cannot help|i won't|i will not|i'm (?:not able|unable)|"
    r"i can't assist|i cannot assist|sorry, (?:but )?i can(?:'|no)?t|as an ai)\b"
)
# Specific guidance gives a reason or a safer path.
SPECIFIC = (
    r"(?i)\b(because|instead|safer|safely|risk|danger|crime|illegal|harm|hurt|please|call|ask"
    r"|use|contact|police|support)\b"
)

# the numeric score columns the checks add (plotted by the quality stage)
IMAGE_SCORE_COLUMNS = ("min_side", "aspect_ratio", "blur_variance", "pixel_std")
SCORE_COLUMNS = (*IMAGE_SCORE_COLUMNS, "query_chars", "guidance_chars")


def image_stats(path: str) -> dict[str, float]:
    """Size, aspect ratio, sharpness (variance of the Laplacian) and contrast of one image."""
    with Image.open(path) as img:
        width, height = img.size
        grey_img = img.convert("L")
    # sharpness at a common scale: a large photo's pixel-level Laplacian is small even when sharp
    grey_img.thumbnail((512, 512), Image.Resampling.LANCZOS)
    grey = np.asarray(grey_img, dtype=np.float64)
    return {
        "min_side": float(min(width, height)),
        "aspect_ratio": float(max(width, height) / max(1, min(width, height))),
        "blur_variance": float(laplace(grey).var()),
        "pixel_std": float(grey.std()),
    }


def image_checks(table: pl.DataFrame, params: Mapping[str, Any]) -> pl.DataFrame:
    paths = table.select("image_id", "image_path").unique("image_id")
    stats = (
        pl.DataFrame([{"image_id": i, **image_stats(p)} for i, p in paths.iter_rows()])
        if paths.height
        else None
    )
    if stats is None:
        return table.with_columns(
            *(pl.lit(None, pl.Float64).alias(c) for c in IMAGE_SCORE_COLUMNS),
            pl.lit(None, pl.String).alias("_q_image"),
        )
    table = table.join(stats, on="image_id", how="left")
    return table.with_columns(
        _q_image=pl.when(pl.col("min_side") < params["min_side"])
        .then(pl.lit("image_too_small"))
        .when(pl.col("aspect_ratio") > params["max_aspect_ratio"])
        .then(pl.lit("image_extreme_aspect"))
        .when(pl.col("pixel_std") < 2.0)
        .then(pl.lit("image_blank"))
        .when(pl.col("blur_variance") < params["min_blur_variance"])
        .then(pl.lit("image_blurry"))
    )


def text_checks(table: pl.DataFrame, params: Mapping[str, Any]) -> pl.DataFrame:
    table = table.with_columns(
        query_chars=pl.col("query").str.len_chars(),
        guidance_chars=pl.col("guidance").str.len_chars(),
        guidance_refuses=pl.col("guidance").str.contains(REFUSAL),
        guidance_specific=pl.col("guidance").str.contains(SPECIFIC),
    )
    return table.with_columns(
        _q_text=pl.when(pl.col("query_chars") < params["min_query_chars"])
        .then(pl.lit("query_too_short"))
        .when(pl.col("query_chars") > params["max_query_chars"])
        .then(pl.lit("query_too_long"))
        .when(pl.col("guidance_chars") < params["min_guidance_chars"])
        .then(pl.lit("guidance_too_short"))
        .when(
            (pl.col("label") == "unsafe")
            & pl.col("guidance_refuses")
            & ~pl.col("guidance_specific")
        )
        .then(pl.lit("bare_refusal"))
        .when((pl.col("label") == "safe") & pl.col("guidance_refuses"))
        .then(pl.lit("refuses_benign"))
    )


def label_checks(table: pl.DataFrame, categories: Mapping[str, Any]) -> pl.DataFrame:
    return table.with_columns(
        _q_label=pl.when(~pl.col("label").is_in(["safe", "unsafe"]))
        .then(pl.lit("invalid_label"))
        .when(~pl.col("category").is_in(list(categories)))
        .then(pl.lit("invalid_category"))
    )


def run_checks(
    table: pl.DataFrame, params: Mapping[str, Any], categories: Mapping[str, Any]
) -> pl.DataFrame:
    """The table with score columns and `quality_reason` (null when the row passes)."""
    table = label_checks(table, categories)
    table = image_checks(table, params)
    table = text_checks(table, params)
    return table.with_columns(quality_reason=pl.coalesce("_q_label", "_q_image", "_q_text")).drop(
        "_q_label", "_q_image", "_q_text"
    )
