"""Image clusters on real photos and their edited copies, through the real feature code:
image_features_cached (pHash, thumbnail, size, sharpness; the pixel hash as ingest computes it)
and open_nsfw embeddings; and distinct pictures on one white background, which every cheap
matcher calls alike, kept apart by verification."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import PARAMS
from PIL import Image, ImageDraw, ImageEnhance, ImageFont
from skimage import data

from safeforge.cache import RowCache
from safeforge.dedup.images import image_clusters, image_params
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
    "jpeg30": lambda im: jpeg(im, 30),
    "crop3": lambda im: crop(im, 0.03),
    "crop5": lambda im: crop(im, 0.05),
    "rotate3": lambda im: im.rotate(3, Image.Resampling.BICUBIC),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "caption": caption,
}
DEFAULTS = image_params(PARAMS["dedup"])
# every pair a candidate: what verification alone decides
EVERY_PAIR = {**DEFAULTS, "phash_max_distance": 64, "layout_min_cosine": -1.0}
EVERY_PAIR["candidates_per_image"] = 1000


def features_of(paths: dict[str, Path], cache_dir: Path) -> pl.DataFrame:
    """What images.parquet holds for each file, then embed's features, and the file's path."""
    images = [load_rgb(str(p)) for p in paths.values()]
    ingested = pl.DataFrame(
        {
            "image_id": list(paths),
            "path": [str(p) for p in paths.values()],
            "pixel_sha256": [pixel_sha256(np.asarray(im)) for im in images],
            "width": [im.width for im in images],
            "height": [im.height for im in images],
        }
    )
    features = image_features_cached(ingested, RowCache("test", cache_dir))
    return features.with_columns(path=ingested["path"])


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
    features = features_of(paths, folder / "cache")
    images = [load_rgb(str(p)) for p in paths.values()]
    _, emb = NsfwModel().score_and_features(images, 16)
    return features.with_columns(semantic_emb=pl.Series(emb.astype(np.float16)))


def test_every_copy_joins_its_original_and_originals_stay_apart(features: pl.DataFrame) -> None:
    for params in (DEFAULTS, EVERY_PAIR, {**DEFAULTS, "semantic_min_cosine": 0.9}):
        got = image_clusters(features, **params)
        cluster = dict(got.select("image_id", "image_cluster").rows())
        for name in PHOTOS:
            members = {k for k in cluster if k.startswith(f"{name}/")}
            assert len({cluster[k] for k in members}) == 1, (name, params)
        assert len(set(cluster.values())) == len(PHOTOS), params
    method = dict(got.select("image_id", "dup_method").rows())
    # identical pixels: one keeps the other as an exact duplicate, unless both lost to another
    pair = ("coffee/original", "coffee/copy")
    assert cluster[pair[0]] == cluster[pair[1]]
    if cluster[pair[0]] in pair:
        other = pair[1] if cluster[pair[0]] == pair[0] else pair[0]
        assert method[other] == "image_exact"


def test_the_keeper_has_the_most_pixels_then_the_sharpest(features: pl.DataFrame) -> None:
    got = image_clusters(features, **DEFAULTS)
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


def test_phash_alone_misses_crops_that_the_layout_matcher_finds(features: pl.DataFrame) -> None:
    tight = {**DEFAULTS, "phash_max_distance": 8}
    got = image_clusters(features, **{**tight, "layout_min_cosine": None})
    method = dict(got.select("image_id", "dup_method").rows())
    cluster = dict(got.select("image_id", "image_cluster").rows())
    for name in PHOTOS:
        assert cluster[f"{name}/half"] == cluster[f"{name}/original"]
        assert cluster[f"{name}/jpeg30"] == cluster[f"{name}/original"]
    assert {"image_layout", "image_semantic"}.isdisjoint(method.values())
    with_layout = image_clusters(features, **tight)
    assert with_layout["image_cluster"].n_unique() < got["image_cluster"].n_unique()
    assert "image_layout" in with_layout["dup_method"].to_list()
    scores = with_layout.filter(pl.col("dup_method") != "none")["dup_score"]
    assert scores.null_count() == 0 and scores.min() >= DEFAULTS["min_match_score"]


SLIDES = (
    "How to pick a lock in five steps",
    "Ten facts about the moon landing",
    "Quarterly results: revenue up 12%",
    "Step 1: open the settings menu",
    "Do not mix bleach and ammonia",
    "Welcome to the team offsite",
)


def slide(text: str, index: int) -> Image.Image:
    """A typographic slide: black text in one layout on a white page."""
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    draw.text((40, 60), text[:18], fill="black", font=font)
    draw.text((40, 120), text[18:], fill="black", font=font)
    draw.text((40, 400), f"slide {index}", fill=(90, 90, 90), font=ImageFont.load_default(size=20))
    return image


def icon(shape: str) -> Image.Image:
    """A flat icon centred on white."""
    image = Image.new("RGB", (400, 400), "white")
    draw = ImageDraw.Draw(image)
    box = (110, 110, 290, 290)
    getattr(draw, shape)(box, fill=(20, 60, 200)) if shape != "polygon" else draw.polygon(
        [(200, 100), (300, 290), (100, 290)], fill=(20, 60, 200)
    )
    return image


def test_distinct_pictures_on_white_stay_apart_and_their_copies_join(tmp_path: Path) -> None:
    pictures = {f"slide{i}": slide(t, i) for i, t in enumerate(SLIDES)}
    pictures |= {shape: icon(shape) for shape in ("ellipse", "rectangle", "polygon")}
    paths = {}
    for name, image in pictures.items():
        for edit, copy in (
            ("original", image),
            ("crop5", crop(image, 0.05)),
            ("jpeg30", jpeg(image, 30)),
        ):
            paths[f"{name}/{edit}"] = tmp_path / f"{name}-{edit}.png"
            copy.save(paths[f"{name}/{edit}"])
    got = image_clusters(features_of(paths, tmp_path / "cache"), **EVERY_PAIR)
    cluster = dict(got.select("image_id", "image_cluster").rows())
    for name in pictures:
        assert len({cluster[k] for k in cluster if k.startswith(f"{name}/")}) == 1, name
    assert len(set(cluster.values())) == len(pictures)
