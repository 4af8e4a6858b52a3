"""Image clusters on real photos and their edited copies, through the real feature code:
image_features_cached (pHash, size, sharpness; the pixel hash as ingest computes it) and open_nsfw
embeddings."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageDraw, ImageEnhance
from skimage import data

from safeforge.cache import RowCache
from safeforge.dedup.images import image_clusters
from safeforge.embeddings.images import image_features_cached
from safeforge.images.ingest import pixel_sha256
from safeforge.images.load import load_rgb
from safeforge.perception.nsfw import NsfwModel

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def crop(image: Image.Image, share: float) -> Image.Image:
    dx, dy = int(image.width * share), int(image.height * share)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def caption(image: Image.Image) -> Image.Image:
    image = image.copy()
    ImageDraw.Draw(image).text((10, 10), "SAFETY FIRST", fill=(255, 255, 255))
    return image


EDITS = {
    "half": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR),
    "jpeg50": lambda im: jpeg(im, 50),
    "crop3": lambda im: crop(im, 0.03),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "caption": caption,
}


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in PHOTOS:
        original = Image.fromarray(getattr(data, name)()).convert("RGB")
        for edit, image in {
            "original": original,
            **{e: f(original) for e, f in EDITS.items()},
        }.items():
            paths[f"{name}/{edit}"] = folder / f"{name}-{edit}.png"
            image.save(paths[f"{name}/{edit}"])
    # an exact copy under another name: same pixels, another file
    paths["coffee/copy"] = folder / "coffee-copy.png"
    paths["coffee/copy"].write_bytes(Path(paths["coffee/original"]).read_bytes())
    images = [load_rgb(str(p)) for p in paths.values()]
    ingested = pl.DataFrame(  # what images.parquet holds for each
        {
            "image_id": list(paths),
            "path": [str(p) for p in paths.values()],
            "pixel_sha256": [pixel_sha256(np.asarray(im)) for im in images],
            "width": [im.width for im in images],
            "height": [im.height for im in images],
        }
    )
    features = image_features_cached(ingested, RowCache("test", folder / "cache"))
    _, emb = NsfwModel().score_and_features(images, 16)
    return features.with_columns(semantic_emb=pl.Series(emb.astype(np.float16)))


def test_every_copy_joins_its_original_and_originals_stay_apart(features: pl.DataFrame) -> None:
    got = image_clusters(features, phash_max_distance=8, semantic_min_cosine=0.9)
    cluster = dict(got.select("image_id", "image_cluster").rows())
    for name in PHOTOS:
        members = {k for k in cluster if k.startswith(f"{name}/")}
        assert len({cluster[k] for k in members}) == 1, name
    assert len(set(cluster.values())) == len(PHOTOS)
    method = dict(got.select("image_id", "dup_method").rows())
    # identical pixels: one keeps the other as an exact duplicate, unless both lost to another
    pair = ("coffee/original", "coffee/copy")
    assert cluster[pair[0]] == cluster[pair[1]]
    if cluster[pair[0]] in pair:
        other = pair[1] if cluster[pair[0]] == pair[0] else pair[0]
        assert method[other] == "image_exact"


def test_the_keeper_has_the_most_pixels_then_the_sharpest(features: pl.DataFrame) -> None:
    got = image_clusters(features, phash_max_distance=8, semantic_min_cosine=0.9)
    keeper = dict(got.select("image_id", "image_cluster").rows())
    for name in PHOTOS:
        members = features.filter(pl.col("image_id").str.starts_with(f"{name}/"))
        best = members.sort(
            pl.col("width") * pl.col("height"),
            "blur_variance",
            "image_id",
            descending=[True, True, False],
        )["image_id"][0]
        assert {keeper[m] for m in members["image_id"]} == {best}
        assert best not in (f"{name}/half", f"{name}/crop3")  # never a smaller copy


def test_phash_alone_catches_resize_and_reencode_but_not_crops(features: pl.DataFrame) -> None:
    got = image_clusters(features, phash_max_distance=8, semantic_min_cosine=None)
    method = dict(got.select("image_id", "dup_method").rows())
    cluster = dict(got.select("image_id", "image_cluster").rows())
    for name in PHOTOS:
        assert cluster[f"{name}/half"] == cluster[f"{name}/original"]
        assert cluster[f"{name}/jpeg50"] == cluster[f"{name}/original"]
    assert "image_semantic" not in method.values()
    # the semantic matcher adds what pHash misses
    with_semantic = image_clusters(features, phash_max_distance=8, semantic_min_cosine=0.9)
    assert with_semantic["image_cluster"].n_unique() < got["image_cluster"].n_unique()
