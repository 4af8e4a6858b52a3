"""Decode, verify and normalise source images; quarantine the ones that are not safe to use.

An image's id is the sha256 of its file bytes. Normalised copies (EXIF rotation applied, RGB,
PNG) are written as `<image_id>.png`, so later stages never see orientation or mode quirks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from safeforge import io

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.jsonl"


@dataclass(frozen=True)
class SourceImage:
    path: Path
    caption: str


@dataclass(frozen=True)
class IngestedImage:
    image_id: str
    path: str
    source_path: str
    source: str
    width: int
    height: int
    format: str
    n_bytes: int
    pixel_sha256: str
    caption: str


class Rejected(Exception):
    """An input file that cannot be used; `reason` goes to dropped.parquet."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def list_source(folder: Path) -> list[SourceImage]:
    """Every file under `folder` (sorted, recursive, hidden files skipped) with its caption."""
    if not folder.is_dir():
        raise FileNotFoundError(f"source folder {folder} does not exist (check source.dir)")
    captions = read_captions(folder / CAPTIONS_FILE)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name != CAPTIONS_FILE
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return [SourceImage(p, captions.get(p.relative_to(folder).as_posix(), "")) for p in files]


def read_captions(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    captions = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise TypeError(f"a JSON object, not {type(entry).__name__}")
            captions[entry["file"]] = str(entry.get("caption", ""))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f'{path}:{n}: expected {{"file": ..., "caption": ...}}: {err}'
            ) from None
    return captions


def ingest_file(
    src: SourceImage, out_dir: Path, source: str, max_pixels: int, min_side: int
) -> IngestedImage:
    """Verify and normalise one file; raises Rejected with a reason when it cannot be used."""
    data = src.path.read_bytes()
    if not data:
        raise Rejected("empty_file", str(src.path))
    image_id = hashlib.sha256(data).hexdigest()
    fmt, rgb = _decode(src.path, max_pixels)
    if min(rgb.size) < min_side:
        raise Rejected("too_small", f"{src.path}: {rgb.size[0]}x{rgb.size[1]} < {min_side}px")
    pixels = np.asarray(rgb)
    out_path = out_dir / f"{image_id}.png"
    with io.atomic_path(out_path) as tmp:
        rgb.save(tmp, format="PNG")
    return IngestedImage(
        image_id=image_id,
        path=out_path.as_posix(),
        source_path=src.path.as_posix(),
        source=source,
        width=rgb.size[0],
        height=rgb.size[1],
        format=fmt,
        n_bytes=len(data),
        pixel_sha256=pixel_sha256(pixels),
        caption=src.caption,
    )


def pixel_sha256(pixels: np.ndarray) -> str:
    """Hash of decoded pixels and their shape: the same picture in PNG and lossless WebP agree."""
    return hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


def _decode(path: Path, max_pixels: int) -> tuple[str, Image.Image]:
    """(format, RGB image with EXIF rotation applied); raises Rejected."""
    previous = Image.MAX_IMAGE_PIXELS  # a process-wide PIL setting: put it back afterwards
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # PIL only warns between max_pixels and 2x; treat every bomb as one
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                fmt = img.format or "UNKNOWN"
                img.verify()  # structure check; the image must be reopened after it
            with Image.open(path) as img:
                img.load()
                return fmt, ImageOps.exif_transpose(img).convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise Rejected("decompression_bomb", str(err)) from None
    except UnidentifiedImageError:
        raise Rejected("not_an_image", f"{path}: PIL cannot identify it") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise Rejected("corrupt_image", f"{path}: {err}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def as_row(image: IngestedImage) -> dict:
    return asdict(image)
