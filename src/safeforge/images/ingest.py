"""Decode, verify and normalise source images; quarantine the ones that are not safe to use.

An image's id is the sha256 of its file bytes. Normalised copies (EXIF rotation applied, RGB,
PNG) are written as `<image_id>.png`, so later stages never see orientation or mode quirks:
alpha is dropped (the colour under it kept), 16-bit samples keep their high byte, an animated
image keeps its first frame. A link whose target lies outside the source folder is refused
(`path_escapes_source`) before anything is read through it. README: "What ingest does with bad
files" lists every reason.
"""

from __future__ import annotations

import hashlib
import io as stdio
import json
import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from safeforge import io

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.jsonl"
# PIL modes holding 16-bit samples; PIL's own convert("RGB") clips them at 255 (a white image)
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


@dataclass(frozen=True)
class SourceImage:
    """A file listed in the source folder. `root` is that folder: when set, ingest_file refuses
    the file if its real location (links resolved) is outside it."""

    path: Path
    caption: str
    root: Path | None = None


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
    """Every file under `folder` (sorted, recursive, hidden files skipped) with its caption.

    Links are listed, not judged: ingest_file refuses the ones leading outside `folder`. A linked
    sub-folder is not walked: one leading outside is listed as a single entry (to be refused
    without reading what is behind it), one staying inside is skipped, its files being listed
    under their real path already (walking it too would list them twice, or loop forever).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"source folder {folder} does not exist (check source.dir)")
    captions = read_captions(folder / CAPTIONS_FILE)
    root = folder.resolve()
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):  # followlinks=False: see above
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # hidden: not walked
        for name in dirnames:
            if (here / name).is_symlink() and not _inside(here / name, root):
                files.append(here / name)
        for name in filenames:
            path = here / name
            if name.startswith(".") or name == CAPTIONS_FILE:
                continue
            # a link is always listed (refused later if it escapes or leads nowhere); a FIFO,
            # socket or device is no image file and would block or fail a read
            if path.is_symlink() or path.is_file():
                files.append(path)
    return [
        SourceImage(p, captions.get(p.relative_to(folder).as_posix(), ""), root)
        for p in sorted(files)
    ]


def read_captions(path: Path) -> dict[str, str]:
    """{relative file path: caption} from a JSON Lines file; a bad line fails naming the file
    and its line number (counted from 1, blank lines included)."""
    if not path.exists():
        return {}
    captions = {}
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{n}: not UTF-8 text ({err})") from None
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise TypeError(f"a JSON object, not {type(entry).__name__}")
                file, caption = entry["file"], entry.get("caption", "")
                # str(None) would silently become the caption "None"
                if not isinstance(file, str) or not isinstance(caption, str):
                    raise TypeError('"file" and "caption" must be strings')
                captions[file] = caption
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(
                    f'{path}:{n}: expected {{"file": ..., "caption": ...}}: {err}'
                ) from None
    return captions


def ingest_files(
    files: Iterable[SourceImage], out_dir: Path, source: str, max_pixels: int, min_side: int
) -> tuple[list[dict], list[dict]]:
    """(images.parquet rows, dropped rows {source_path, reason, detail}) for `files` in order.

    Identical bytes under a second name are one image: the first file (path order) is kept and
    the others dropped as `duplicate_file:<kept path>`.
    """
    rows, rejected, seen = [], [], {}
    for src in files:
        try:
            image = ingest_file(src, out_dir, source, max_pixels, min_side)
        except Rejected as err:
            log.warning("quarantined %s: %s", src.path, err)
            rejected.append(
                {"source_path": src.path.as_posix(), "reason": err.reason, "detail": err.detail}
            )
            continue
        if image.image_id in seen:  # same bytes, same id: one image
            rejected.append(
                {
                    "source_path": src.path.as_posix(),
                    "reason": f"duplicate_file:{seen[image.image_id]}",
                    "detail": "",
                }
            )
            continue
        seen[image.image_id] = image.source_path
        rows.append(as_row(image))
    return rows, rejected


def ingest_file(
    src: SourceImage, out_dir: Path, source: str, max_pixels: int, min_side: int
) -> IngestedImage:
    """Verify and normalise one file; raises Rejected with a reason when it cannot be used."""
    data, fmt, rgb = read_image(src, max_pixels)
    image_id = hashlib.sha256(data).hexdigest()
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


def read_image(src: SourceImage, max_pixels: int) -> tuple[bytes, str, Image.Image]:
    """(bytes, format, upright RGB image) of one file, with every check ingest makes before it
    keeps a file: a link out of the source folder, not a file, empty, not an image, corrupt, a
    decompression bomb each raise Rejected with that reason."""
    data = _read(src)
    if not data:
        raise Rejected("empty_file", str(src.path))
    fmt, rgb = _decode(src.path, data, max_pixels)
    return data, fmt, rgb


def pixel_sha256(pixels: np.ndarray) -> str:
    """Hash of decoded pixels and their shape: the same picture in PNG and lossless WebP agree."""
    return hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, links resolved, is `root` (already resolved) or lies under it."""
    return path.resolve().is_relative_to(root)


def _read(src: SourceImage) -> bytes:
    """The file's bytes, read once (the id, the checks and the decoding all see the same bytes);
    a link out of the source folder, or to nothing readable, is refused before any read."""
    if src.root is not None and not _inside(src.path, src.root.resolve()):
        raise Rejected("path_escapes_source", f"{src.path} -> {src.path.resolve()}")
    if not src.path.is_file():  # a dangling link, or one to a folder, FIFO or device
        raise Rejected("not_a_file", f"{src.path} -> {src.path.resolve()}")
    return src.path.read_bytes()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in SIXTEEN_BIT_MODES:
        # keep the high byte, as PIL does for 16-bit RGB PNGs, instead of clipping at 255
        high = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(high).convert("RGB")  # 2-D uint8: mode L
    return img.convert("RGB")


def _decode(path: Path, data: bytes, max_pixels: int) -> tuple[str, Image.Image]:
    """(format, RGB image with EXIF rotation applied) of `data`, read from `path`; raises
    Rejected."""
    previous = Image.MAX_IMAGE_PIXELS  # a process-wide PIL setting: put it back afterwards
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # PIL only warns between max_pixels and 2x; treat every bomb as one
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stdio.BytesIO(data)) as img:
                fmt = img.format or "UNKNOWN"
                img.verify()  # structure check; the image must be reopened after it
            with Image.open(stdio.BytesIO(data)) as img:
                img.load()  # an animated image: its first frame
                return fmt, _to_rgb(ImageOps.exif_transpose(img))
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
