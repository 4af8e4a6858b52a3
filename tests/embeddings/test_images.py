"""Per-image features from one decode agree with what ingest and pHash compute on their own."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from skimage import data

from safeforge.cache import RowCache
from safeforge.dedup.perceptual import hamming
from safeforge.embeddings.images import (
    image_features_cached,
    image_file_features,
    laplacian_variance,
)
from safeforge.images.ingest import SourceImage, ingest_file, pixel_sha256
from safeforge.images.phash import phash


def test_features_of_an_ingested_photo(tmp_path: Path) -> None:
    src = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(src, quality=90)
    ingested = ingest_file(SourceImage(src, ""), tmp_path / "out", "test", 10**8, 8)
    images = pl.DataFrame([asdict(ingested)])
    got = image_features_cached(images, RowCache("test", tmp_path / "cache")).row(0, named=True)
    assert got["pixel_sha256"] == ingested.pixel_sha256  # carried over, not recomputed
    assert got["phash"] == phash(Image.open(ingested.path))
    assert (got["width"], got["height"]) == (ingested.width, ingested.height) == (600, 400)
    assert got["min_side"] == 400.0 and got["aspect_ratio"] == 1.5
    assert got["blur_variance"] > 10.0 and 10.0 < got["pixel_std"] < 128.0


def test_a_large_jpeg_decoded_at_reduced_scale_hashes_like_the_full_decode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.jpg"
    big = Image.fromarray(data.astronaut()).resize((2400, 1600), Image.Resampling.BICUBIC)
    big.save(path, quality=90)
    got = image_file_features(str(path))
    assert (got["min_side"], got["aspect_ratio"]) == (1600.0, 1.5)  # the file's size, not 512
    assert hamming(got["phash"], phash(Image.open(path))) <= 2


def test_laplacian_variance_hand_checked() -> None:
    grey = np.zeros((5, 5), np.float32)
    grey[2, 2] = 3.0
    # interior Laplacian: -12 at the centre, +3 at its 4 neighbours, 0 at the 4 corners
    assert laplacian_variance(grey) == pytest.approx((144 + 4 * 9) / 9)
    assert laplacian_variance(np.full((4, 7), 9.0, np.float32)) == 0.0
    assert laplacian_variance(np.ones((2, 9), np.float32)) == 0.0  # no interior


def test_blank_image_has_no_contrast_and_no_edges(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("RGB", (300, 100), (90, 90, 90)).save(path)
    got = image_file_features(str(path))
    assert (got["blur_variance"], got["pixel_std"], got["aspect_ratio"]) == (0.0, 0.0, 3.0)


def test_cached_features_are_computed_once(tmp_path: Path) -> None:
    paths = []
    for i, name in enumerate(["camera", "coins"]):
        path = tmp_path / f"{name}.png"
        pixels = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB"))
        Image.fromarray(pixels).save(path)
        paths.append(
            {
                "image_id": f"{i:064x}",
                "path": str(path),
                "pixel_sha256": pixel_sha256(pixels),
                "width": pixels.shape[1],
                "height": pixels.shape[0],
            }
        )
    images = pl.DataFrame(paths)
    cache = RowCache("test", tmp_path / "cache")
    first = image_features_cached(images, cache)
    assert cache.misses == 2
    again = image_features_cached(images, RowCache("test", tmp_path / "cache"))
    assert again.equals(first)
    assert first["image_id"].to_list() == images["image_id"].to_list()
    assert first.row(0, named=True)["phash"] == image_file_features(paths[0]["path"])["phash"]
