"""The centre-removed image (the paper's strategy 2, with a fixed centred box): the score it
gets, sc, tells how much of Yes the centre of the image carries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from safeforge import io
from safeforge.backends.base import file_sha256
from safeforge.images.load import load_rgb

CENTRE_DIR = "clue-centre"  # under the row cache's folder


def remove_centre(image: Image.Image, fraction: float) -> Image.Image:
    """The image with a centred box of `fraction` of each side (rounded half up, at least one
    pixel) filled with the whole image's mean colour (rounded to integers)."""
    pixels = np.asarray(image.convert("RGB")).copy()
    height, width = pixels.shape[:2]
    bw = max(1, int(width * fraction + 0.5))
    bh = max(1, int(height * fraction + 0.5))
    left, top = (width - bw) // 2, (height - bh) // 2
    mean = np.rint(pixels.reshape(-1, 3).astype(np.float64).mean(axis=0)).astype(np.uint8)
    pixels[top : top + bh, left : left + bw] = mean
    return Image.fromarray(pixels, "RGB")


def centre_removed_path(path: str, fraction: float, folder: Path) -> str:
    """A PNG of `remove_centre`, written once per image content and fraction under `folder`."""
    target = Path(folder) / f"{file_sha256(path)}-{fraction:g}.png"
    if not target.exists():
        with io.atomic_path(target) as tmp:
            remove_centre(load_rgb(path), fraction).save(tmp, format="PNG")
    return str(target)
