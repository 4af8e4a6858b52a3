"""Per-image features for dedup and quality from one decode: pixel hash, pHash, size, sharpness.

They are computed once per image (through the row cache) in `embed`, so dedup and quality
thresholds sweep without opening an image again.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from PIL import Image
from scipy.ndimage import laplace

from safeforge.cache import RowCache, cache_key, json_codec
from safeforge.dedup.perceptual import phash
from safeforge.images.ingest import pixel_sha256
from safeforge.perception.describe import load_rgb

VERSION = 1  # bump when a feature's definition changes: the row cache then recomputes
STATS_SIDE = 512  # sharpness and contrast are measured at this scale (see image_stats)

IMAGE_FEATURE_SCHEMA = {
    "pixel_sha256": pl.String,
    "phash": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "min_side": pl.Float64,
    "aspect_ratio": pl.Float64,
    "blur_variance": pl.Float64,
    "pixel_std": pl.Float64,
}


def image_stats(image: Image.Image) -> dict[str, float]:
    """Size, aspect ratio, sharpness (variance of the Laplacian) and contrast of one image."""
    width, height = image.size
    grey_img = image.convert("L")
    # sharpness at a common scale: a large photo's pixel-level Laplacian is small even when sharp
    grey_img.thumbnail((STATS_SIDE, STATS_SIDE), Image.Resampling.LANCZOS)
    grey = np.asarray(grey_img, dtype=np.float64)
    return {
        "min_side": float(min(width, height)),
        "aspect_ratio": float(max(width, height) / max(1, min(width, height))),
        "blur_variance": float(laplace(grey).var()),
        "pixel_std": float(grey.std()),
    }


def image_file_features(path: str) -> dict:
    """Every per-image feature of the file at `path` (keys of IMAGE_FEATURE_SCHEMA)."""
    image = load_rgb(path)
    return {
        "pixel_sha256": pixel_sha256(np.asarray(image)),
        "phash": phash(image),
        "width": image.width,
        "height": image.height,
        **image_stats(image),
    }


def image_features_cached(images: pl.DataFrame, cache: RowCache) -> pl.DataFrame:
    """image_id plus IMAGE_FEATURE_SCHEMA columns for rows with image_id and path."""
    encode, decode = json_codec()
    rows = images.select("image_id", "path").to_dicts()
    values = cache.map(
        rows,
        key_fn=lambda r: cache_key(kind="image_features", version=VERSION, image_id=r["image_id"]),
        compute=lambda batch: [image_file_features(r["path"]) for r in batch],
        encode=encode,
        decode=decode,
        desc="image features",
    )
    return pl.DataFrame(values, schema=IMAGE_FEATURE_SCHEMA).select(
        pl.Series("image_id", [r["image_id"] for r in rows], dtype=pl.String), pl.all()
    )
