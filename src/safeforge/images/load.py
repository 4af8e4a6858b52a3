"""Decoding an image file for a model: RGB pixels, upright."""

from __future__ import annotations

from PIL import Image, ImageOps


def load_rgb(path: str) -> Image.Image:
    """RGB pixels, upright: ingested copies are already, benchmark files may carry EXIF rotation."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def load_grey(path: str, side: int) -> Image.Image:
    """Grey pixels, upright, at most `side` on a side (see grey_of)."""
    with Image.open(path) as img:
        return grey_of(img, side)


def grey_of(img: Image.Image, side: int) -> Image.Image:
    """An opened image's grey pixels, upright, at most `side` on a side: a JPEG decodes at a
    reduced scale (draft mode, far cheaper on a camera photo), then is reduced with LANCZOS."""
    img.draft("L", (side, side))
    grey = ImageOps.exif_transpose(img).convert("L")
    grey.thumbnail((side, side), Image.Resampling.LANCZOS)
    return grey
