"""Decoding an image file for a model: RGB pixels, upright."""

from __future__ import annotations

from PIL import Image, ImageOps


def load_rgb(path: str) -> Image.Image:
    """RGB pixels, upright: ingested copies are already, benchmark files may carry EXIF rotation."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")
