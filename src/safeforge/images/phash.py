"""Perceptual hash (pHash, 64 bits) of an image: an image feature, computed once in embed.

grey 32x32 (through 512 for a larger image), 2-D DCT, the 8x8 lowest frequencies against their
median. Resizing and re-encoding barely move it; different photos land ~32 bits apart.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn

HASH_SIDE = 512  # a larger image is first reduced to this side: the same hash, far less work


def phash(image: Image.Image) -> str:
    grey = image.convert("L")  # a copy, even of a grey image: thumbnail() below is in place
    if max(grey.size) > HASH_SIDE:
        grey.thumbnail((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    small = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(small, norm="ortho")[:8, :8]
    bits = (low > np.median(low)).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"
