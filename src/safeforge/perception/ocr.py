"""Text in images via RapidOCR (PP-OCR ONNX models shipped inside the `rapidocr` wheel).

The models live in the installed package, so reading works offline; nothing is downloaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, ClassVar

import numpy as np
import polars as pl

from safeforge.cache import RowCache, cache_key, json_codec
from safeforge.images.load import load_rgb
from safeforge.shippable import Shippable


@dataclass(frozen=True)
class OcrResult:
    """Recognised text of one image: lines joined with a space, and their mean score."""

    text: str
    confidence: float


class OcrReader(Shippable):
    """Wraps `rapidocr.RapidOCR`; the engine is built on first use, once per instance.

    `min_confidence` drops recognised lines scoring below it (RapidOCR's `text_score`).
    """

    _transient: ClassVar[dict[str, Callable[[], Any]]] = {
        "_engine": lambda: None,
        "_lock": threading.Lock,
    }

    def __init__(self, min_confidence: float) -> None:
        """`min_confidence`: `describe.ocr_min_confidence` in conf/config.yaml."""
        self.min_confidence = min_confidence
        # names the package and version, so row-cache keys change when the OCR models do
        self.model_id = f"rapidocr@{version('rapidocr')}"
        self._engine: Any = None
        self._lock = threading.Lock()

    def _get_engine(self) -> Any:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    # Imported here so importing safeforge never pays for cv2/onnxruntime.
                    from rapidocr import RapidOCR

                    self._engine = RapidOCR(
                        params={
                            "Global.text_score": self.min_confidence,
                            # RapidOCR logs every empty detection as a warning; blank images
                            # are normal here. Note: this sets RapidOCR's process-wide logger.
                            "Global.log_level": "error",
                        }
                    )
        return self._engine

    def read(self, image: np.ndarray) -> OcrResult:
        """Recognise text in an RGB uint8 (H, W, 3) image."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB (H, W, 3) array, got shape {image.shape}")
        # RapidOCR treats ndarray input as OpenCV BGR; PIL/skimage give RGB.
        bgr = np.ascontiguousarray(image[:, :, ::-1], dtype=np.uint8)
        out = self._get_engine()(bgr)
        txts = getattr(out, "txts", None) or ()
        scores = getattr(out, "scores", None) or ()
        # RapidOCR already filters by text_score; filter again so the contract holds even if
        # its semantics change between versions.
        lines = [
            (t.strip(), float(s))
            for t, s in zip(txts, scores, strict=True)
            if t.strip() and s >= self.min_confidence
        ]
        if not lines:
            return OcrResult(text="", confidence=0.0)
        # Lines come back sorted top-to-bottom, left-to-right by the detector.
        return OcrResult(
            text=" ".join(t for t, _ in lines),
            confidence=float(np.mean([s for _, s in lines])),
        )


def ocr_cached(images: pl.DataFrame, reader: Any, cache: RowCache) -> list[dict]:
    encode, decode = json_codec()

    def compute(rows: list[dict]) -> list[dict]:
        out = []
        for r in rows:
            result = reader.read(np.asarray(load_rgb(r["path"])))
            out.append({"text": result.text, "confidence": result.confidence})
        return out

    return cache.map(
        images.select("image_id", "path").to_dicts(),
        key_fn=lambda r: cache_key(
            kind="ocr",
            model=reader.model_id,
            min_confidence=reader.min_confidence,
            image_id=r["image_id"],
        ),
        compute=compute,
        encode=encode,
        decode=decode,
        batch_size=8,
        desc="ocr",
    )


def compose_description(caption: str, ocr_text: str) -> str:
    parts = [caption.strip() or "An image."]
    if ocr_text:
        parts.append(f'Visible text: "{ocr_text}".')
    return " ".join(parts)
