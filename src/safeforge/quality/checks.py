"""Image and text quality checks, datatrove-style: a check adds its score columns to the table
and gives each row a drop reason or null. The first failing check (in `run_checks` order) names
the reason; every score column stays on the table so a user can see why a row went.

The image scores (min_side, aspect_ratio, blur_variance, pixel_std), the query's image lift and
the image-free judge's score are features from `embed`: the checks read columns and never open
an image, so a threshold sweep over a million rows takes seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from safeforge.labels import LABELS

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
# control characters other than line breaks and tabs, and U+FFFD (a decoding error upstream)
BAD_CHARACTERS = r"[\p{Cc}&&[^\n\r\t]]|\x{FFFD}"

IMAGE_SCORE_COLUMNS = ("min_side", "aspect_ratio", "blur_variance", "pixel_std")
TEXT_SCORE_COLUMNS = ("query_chars", "guidance_chars", "script_share", "bad_characters")
# the numeric score columns (plotted by the quality stage)
SCORE_COLUMNS = (
    *IMAGE_SCORE_COLUMNS,
    *TEXT_SCORE_COLUMNS,
    "query_image_lift",
    "text_only_p_unsafe",
)
RECORD_FEATURE_COLUMNS = ("query_image_lift", "text_only_p_unsafe")  # from embed, per record
# record kinds whose label depends on their own image (contrast records borrow another image)
GROUNDED_QUERY_TYPES = ("unsafe", "benign")


def image_checks(table: pl.DataFrame, params: Mapping[str, Any]) -> pl.DataFrame:
    return table.with_columns(
        _q_image=pl.when(pl.any_horizontal(pl.col(IMAGE_SCORE_COLUMNS).is_null()))
        .then(pl.lit("missing_features:image"))
        .when(pl.col("min_side") < params["min_side"])
        .then(pl.lit("image_too_small"))
        .when(pl.col("aspect_ratio") > params["max_aspect_ratio"])
        .then(pl.lit("image_extreme_aspect"))
        .when(pl.col("pixel_std") < params["min_pixel_std"])
        .then(pl.lit("image_blank"))
        .when(pl.col("blur_variance") < params["min_blur_variance"])
        .then(pl.lit("image_blurry"))
    )


def script_share(text: pl.Expr, scripts: list[str]) -> pl.Expr:
    """Share of the letters in `text` that belong to `scripts` (Unicode script names); 1 when
    there are no letters."""
    allowed = "[" + "".join(rf"\p{{{s}}}" for s in scripts) + "]"
    letters = text.str.count_matches(r"\p{L}")
    return pl.when(letters > 0).then(text.str.count_matches(allowed) / letters).otherwise(1.0)


def text_checks(table: pl.DataFrame, params: Mapping[str, Any]) -> pl.DataFrame:
    both = pl.concat_str("query", "guidance", separator="\n")
    table = table.with_columns(
        query_chars=pl.col("query").str.len_chars(),
        guidance_chars=pl.col("guidance").str.len_chars(),
        script_share=script_share(both, list(params["scripts"])),
        bad_characters=both.str.count_matches(BAD_CHARACTERS),
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
        .when(pl.col("bad_characters") > 0)
        .then(pl.lit("text_bad_characters"))
        .when(pl.col("script_share") < params["min_script_share"])
        .then(pl.lit("text_wrong_script"))
        .when(
            (pl.col("label") == "unsafe")
            & pl.col("guidance_refuses")
            & ~pl.col("guidance_specific")
        )
        .then(pl.lit("bare_refusal"))
        .when((pl.col("label") == "safe") & pl.col("guidance_refuses"))
        .then(pl.lit("refuses_benign"))
    )


def grounding_checks(table: pl.DataFrame, params: Mapping[str, Any]) -> pl.DataFrame:
    """Queries that do not need their image: an unsafe one the image-free judge already calls
    unsafe (text_only_p_unsafe), or, when min_image_lift is set, one no closer to its own
    image's description than to the average description."""
    text_alone = (pl.col("label") == "unsafe") & (
        pl.col("text_only_p_unsafe") >= params["max_text_only_p_unsafe"]
    )
    unrelated = (
        pl.col("query_type").is_in(GROUNDED_QUERY_TYPES)
        & (pl.col("query_image_lift") < params["min_image_lift"])
        if params["min_image_lift"] is not None
        else pl.lit(False)
    )
    return table.with_columns(
        _q_grounding=pl.when(text_alone | unrelated).then(pl.lit("query_ignores_image"))
    )


def label_checks(table: pl.DataFrame, categories: Mapping[str, Any]) -> pl.DataFrame:
    return table.with_columns(
        _q_label=pl.when(~pl.col("label").is_in(list(LABELS)))
        .then(pl.lit("invalid_label"))
        .when(~pl.col("category").is_in(list(categories)))
        .then(pl.lit("invalid_category"))
    )


def balance(table: pl.DataFrame, max_share: float) -> pl.Expr:
    """A reason for rows past the cap of their (category, label): at most `max_share` of the
    rows that pass every other check. The first rows by record_id (a content hash, so a fair
    sample) stay."""
    passing = pl.col("quality_reason").is_null()
    cap = max(1, int(max_share * table.filter(passing).height))
    rank = pl.col("record_id").rank("ordinal").over("category", "label", passing)
    return (
        pl.when(passing & (rank > cap))
        .then(pl.format("over_cap:{}/{}", "category", "label"))
        .otherwise(pl.col("quality_reason"))
    )


def run_checks(
    table: pl.DataFrame, params: Mapping[str, Any], categories: Mapping[str, Any]
) -> pl.DataFrame:
    """The table with score columns and `quality_reason` (null when the row passes).

    `table` carries the image scores and RECORD_FEATURE_COLUMNS (see the module docstring)."""
    table = label_checks(table, categories)
    table = image_checks(table, params)
    table = text_checks(table, params)
    table = grounding_checks(table, params)
    reasons = ("_q_label", "_q_image", "_q_text", "_q_grounding")
    table = table.with_columns(quality_reason=pl.coalesce(reasons)).drop(reasons)
    return table.with_columns(quality_reason=balance(table, params["max_share"]))
