"""Per-image features for dedup and quality: pHash, a 64x64 thumbnail, size, sharpness and contrast
from one grey decode at most 512 pixels on a side, next to the pixel hash and size ingest
already measured.

They are computed once per image (through the row cache) in `embed`, so dedup and quality
thresholds sweep without opening an image again.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import polars as pl
from PIL import Image

from safeforge.cache import RowCache, cache_key
from safeforge.images.load import grey_of
from safeforge.images.phash import HASH_SIDE, phash
from safeforge.images.thumb import grey_thumbnail

# 2: one grey decode (JPEG at reduced scale), pHash and stats at 512, interior Laplacian
# 3: the 64x64 grey thumbnail dedup verifies on
VERSION = 3  # bump when a feature's definition changes: the row cache then recomputes
STATS_SIDE = HASH_SIDE  # sharpness and contrast are measured at the scale pHash starts from

IMAGE_FEATURE_SCHEMA = {
    "pixel_sha256": pl.String,
    "phash": pl.String,
    "thumb": pl.Binary,
    "width": pl.Int64,
    "height": pl.Int64,
    "min_side": pl.Float64,
    "aspect_ratio": pl.Float64,
    "blur_variance": pl.Float64,
    "pixel_std": pl.Float64,
}
FROM_INGEST = ("pixel_sha256", "width", "height")  # images.parquet has them: not recomputed


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior pixels (0 for a flat image)."""
    if min(grey.shape) < 3:
        return 0.0
    centre = grey[1:-1, 1:-1]
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * centre
    return float(lap.var())


def image_file_features(path: str) -> dict:
    """phash, thumb, min_side, aspect_ratio, blur_variance and pixel_std of the file at `path`."""
    with Image.open(path) as img:
        width, height = img.size  # min side and aspect ratio do not change under EXIF rotation
        # sharpness at a common scale: a large photo's pixel-level Laplacian is small when sharp
        grey_img = grey_of(img, STATS_SIDE)
    grey = np.asarray(grey_img, dtype=np.float32)
    return {
        "phash": phash(grey_img),
        "thumb": grey_thumbnail(grey_img),
        "min_side": float(min(width, height)),
        "aspect_ratio": float(max(width, height) / max(1, min(width, height))),
        "blur_variance": laplacian_variance(grey),
        "pixel_std": float(grey.std()),
    }


def _encode(features: dict) -> bytes:
    return json.dumps({**features, "thumb": base64.b64encode(features["thumb"]).decode()}).encode()


def _decode(blob: bytes) -> dict:
    features = json.loads(blob)
    return {**features, "thumb": base64.b64decode(features["thumb"])}


def image_features_cached(images: pl.DataFrame, cache: RowCache) -> pl.DataFrame:
    """image_id plus IMAGE_FEATURE_SCHEMA columns for rows of images.parquet (image_id, path and
    the FROM_INGEST columns)."""
    rows = images.select("image_id", "path").to_dicts()
    values = cache.map(
        rows,
        key_fn=lambda r: cache_key(kind="image_features", version=VERSION, image_id=r["image_id"]),
        compute=lambda batch: [image_file_features(r["path"]) for r in batch],
        encode=_encode,
        decode=_decode,
        desc="image features",
    )
    computed = [k for k in IMAGE_FEATURE_SCHEMA if k not in FROM_INGEST]
    return pl.concat(
        [
            images.select("image_id", *FROM_INGEST).cast(
                {k: IMAGE_FEATURE_SCHEMA[k] for k in FROM_INGEST}
            ),
            pl.DataFrame(values, schema={k: IMAGE_FEATURE_SCHEMA[k] for k in computed}),
        ],
        how="horizontal",
    ).select("image_id", *IMAGE_FEATURE_SCHEMA)
