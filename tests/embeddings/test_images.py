"""Per-image features from one decode agree with what ingest and pHash compute on their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from skimage import data

from safeforge.cache import RowCache
from safeforge.dedup.perceptual import phash
from safeforge.embeddings.images import image_features_cached, image_file_features
from safeforge.images.ingest import SourceImage, ingest_file


def test_features_of_an_ingested_photo(tmp_path: Path) -> None:
    src = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(src, quality=90)
    ingested = ingest_file(SourceImage(src, ""), tmp_path / "out", "test", 10**8, 8)
    got = image_file_features(ingested.path)
    assert got["pixel_sha256"] == ingested.pixel_sha256  # the PNG copy has the same pixels
    assert got["phash"] == phash(Image.open(ingested.path))
    assert (got["width"], got["height"]) == (ingested.width, ingested.height) == (600, 400)
    assert got["min_side"] == 400.0 and got["aspect_ratio"] == 1.5
    assert got["blur_variance"] > 10.0 and 10.0 < got["pixel_std"] < 128.0


def test_blank_image_has_no_contrast_and_no_edges(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("RGB", (300, 100), (90, 90, 90)).save(path)
    got = image_file_features(str(path))
    assert (got["blur_variance"], got["pixel_std"], got["aspect_ratio"]) == (0.0, 0.0, 3.0)


def test_cached_features_are_computed_once(tmp_path: Path) -> None:
    paths = []
    for i, name in enumerate(["camera", "coins"]):
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.asarray(getattr(data, name)())).save(path)
        paths.append({"image_id": f"{i:064x}", "path": str(path)})
    images = pl.DataFrame(paths)
    cache = RowCache("test", tmp_path / "cache")
    first = image_features_cached(images, cache)
    assert cache.misses == 2
    again = image_features_cached(images, RowCache("test", tmp_path / "cache"))
    assert again.equals(first)
    assert first["image_id"].to_list() == images["image_id"].to_list()
    assert first.row(0, named=True)["phash"] == image_file_features(paths[0]["path"])["phash"]
