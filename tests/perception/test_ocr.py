"""OcrReader on synthetic images rendered with PIL; uses only the models inside `rapidocr`."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import PARAMS
from PIL import Image, ImageDraw, ImageFont

from safeforge.perception.ocr import OcrReader, OcrResult


@pytest.fixture(scope="module")
def reader() -> OcrReader:
    return OcrReader(PARAMS["describe"]["ocr_min_confidence"])


def _render(text: str, size: tuple[int, int] = (512, 512)) -> np.ndarray:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((20, 200), text, fill="black", font=ImageFont.load_default(size=48))
    return np.asarray(img)


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s).lower()


def test_reads_rendered_text(reader: OcrReader) -> None:
    result = reader.read(_render("SAFETY FIRST"))
    assert isinstance(result, OcrResult)
    assert "safetyfirst" in _squash(result.text)
    assert 0.5 <= result.confidence <= 1.0


def test_blank_image_gives_no_text(reader: OcrReader) -> None:
    result = reader.read(np.full((256, 256, 3), 255, dtype=np.uint8))
    assert result == OcrResult(text="", confidence=0.0)


def test_min_confidence_above_one_drops_everything() -> None:
    result = OcrReader(min_confidence=1.01).read(_render("SAFETY FIRST"))
    assert result == OcrResult(text="", confidence=0.0)


def test_rejects_non_rgb(reader: OcrReader) -> None:
    with pytest.raises(ValueError):
        reader.read(np.zeros((32, 32), dtype=np.uint8))
