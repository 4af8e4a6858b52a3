"""A 64x64 grey thumbnail of the whole image, aspect squashed: an image feature (computed once in
embed, 4 KiB a row) that dedup verifies candidate pairs on without opening the image again."""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMB_SIDE = 64


def grey_thumbnail(image: Image.Image) -> bytes:
    """THUMB_SIDE**2 bytes, row-major: the image's grey levels averaged over equal boxes."""
    grey = image.convert("L")
    return grey.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX).tobytes()


def as_array(thumbs: list[bytes]) -> np.ndarray:
    """(n, THUMB_SIDE, THUMB_SIDE) uint8 from grey_thumbnail's bytes."""
    flat = np.frombuffer(b"".join(thumbs), dtype=np.uint8)
    return flat.reshape(-1, THUMB_SIDE, THUMB_SIDE)  # (0, 64, 64) for no thumbnails
