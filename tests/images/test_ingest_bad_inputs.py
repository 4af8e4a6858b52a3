"""A corpus of bad inputs, built here with PIL/numpy (no committed binaries), ingested the way the
stage does (list_source, then ingest_files): each class is either quarantined with its exact
reason or normalised to an exact result. README "What ingest does with bad files" is this list.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import PARAMS
from PIL import Image

from safeforge.images.ingest import (
    Rejected,
    SourceImage,
    ingest_file,
    ingest_files,
    list_source,
)

MAX_PIXELS = PARAMS["ingest"]["max_pixels"]
MIN_SIDE = PARAMS["ingest"]["min_side"]


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def pil_rgb(path: Path) -> np.ndarray:
    """PIL's own RGB conversion of a file: the reference for mode changes ingest leaves to PIL."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


@dataclass(frozen=True)
class Case:
    """One bad-input class: `build` writes it into the source folder as `rel` (and returns, for a
    kept file, the exact pixels its normalised PNG must hold); `reason` is its dropped reason."""

    rel: str
    build: Callable[[Path, Path], np.ndarray | None]  # (file path, outside folder) -> pixels
    reason: str | None = None
    fmt: str | None = None  # the source format recorded for a kept file


def _write(data: bytes) -> Callable[[Path, Path], None]:
    def build(path: Path, outside: Path) -> None:
        path.write_bytes(data)

    return build


def _truncated(path: Path, outside: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(noise(64, 48)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: buf.tell() // 2])


def _bad_crc(path: Path, outside: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(noise(16, 16)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[len(data) // 2] ^= 0xFF  # a byte inside the pixel data (IDAT): its CRC no longer fits
    path.write_bytes(bytes(data))


def _cmyk_jpeg(path: Path, outside: Path) -> np.ndarray:
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, :8, 0] = 255  # left half pure cyan, right half white (no ink)
    Image.fromarray(cmyk, mode="CMYK").save(path, format="JPEG", quality=100)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
    got = pil_rgb(path)
    assert (got[8, 2] < 30).tolist()[0] and (got[8, 2] > 225).tolist()[1:] == [True, True]
    assert (got[8, 13] > 225).all()
    return got


def _png16(path: Path, outside: Path) -> np.ndarray:
    values = np.linspace(0, 65535, 32 * 16).astype(np.uint16).reshape(16, 32)
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16")
    # the high byte of each sample (PIL's own conversion would clip everything above 255)
    return np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2)


def _rgb48(path: Path, outside: Path) -> np.ndarray:
    # a 16-bit-per-channel RGB PNG, written by hand (PIL writes no 48-bit PNG)
    values = np.arange(16 * 16 * 3, dtype=np.uint16).reshape(16, 16, 3) * 85
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)
    ihdr = struct.pack(">IIBBBBB", 16, 16, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )
    return (values >> 8).astype(np.uint8)


def _palette_transparent(path: Path, outside: Path) -> np.ndarray:
    img = Image.fromarray(noise(16, 16, seed=4)).quantize(8)
    img.save(path, transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    rgb = np.asarray(img.convert("RGB"))  # transparency dropped, the palette colour kept
    return rgb


def _grey_alpha(path: Path, outside: Path) -> np.ndarray:
    grey = np.random.default_rng(5).integers(0, 256, (16, 16), np.uint8)
    alpha = np.zeros((16, 16), np.uint8)  # fully transparent: the grey under it is kept
    Image.fromarray(np.stack([grey, alpha], axis=2), mode="LA").save(path)
    return np.repeat(grey[..., None], 3, axis=2)


def _animated_gif(path: Path, outside: Path) -> np.ndarray:
    red, blue = (Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255)))
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(path) as img:
        assert img.n_frames == 2
    return np.asarray(red)  # the first frame


def _animated_webp(path: Path, outside: Path) -> np.ndarray:
    first, second = Image.fromarray(noise(16, 16, seed=17)), Image.fromarray(noise(16, 16, 18))
    first.save(path, save_all=True, append_images=[second], lossless=True, duration=100)
    with Image.open(path) as img:
        assert img.n_frames == 2
    return np.asarray(first)


def _exif_rotated(path: Path, outside: Path) -> np.ndarray:
    # orientation 8: display = stored rotated 90 degrees counter-clockwise; lossless by using
    # flat colour halves (JPEG blurs only the seam, which is not compared exactly below)
    img = Image.new("RGB", (32, 16), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 16, 16))  # stored: left half red
    exif = Image.Exif()
    exif[0x0112] = 8
    img.save(path, exif=exif, quality=100)
    return pil_rgb(path).transpose(1, 0, 2)[::-1]  # the stored pixels, rotated upright


def _webp(path: Path, outside: Path) -> np.ndarray:
    pixels = noise(20, 12, seed=6)
    Image.fromarray(pixels).save(path, format="WEBP", lossless=True)
    return pixels


def _plain(seed: int, size: tuple[int, int] = (12, 10)) -> Callable[[Path, Path], np.ndarray]:
    def build(path: Path, outside: Path) -> np.ndarray:
        pixels = noise(*size, seed=seed)
        Image.fromarray(pixels).save(path, format="PNG")
        return pixels

    return build


def _jpeg_named_png(path: Path, outside: Path) -> np.ndarray:
    Image.new("RGB", (16, 16), (0, 128, 0)).save(path, format="JPEG")
    return pil_rgb(path)


def _link_out(path: Path, outside: Path) -> None:
    Image.fromarray(noise(16, 16, seed=7)).save(outside / "secret.png")
    path.symlink_to(outside / "secret.png")


def _folder_link_out(path: Path, outside: Path) -> None:
    (outside / "dir").mkdir()
    Image.fromarray(noise(16, 16, seed=8)).save(outside / "dir" / "inner.png")
    path.symlink_to(outside / "dir", target_is_directory=True)


def _link_to(path: Path, target: Path) -> np.ndarray:
    pixels = noise(12, 10, seed=9)
    Image.fromarray(pixels).save(target)
    path.symlink_to(target)
    return pixels


def _dangling(path: Path, outside: Path) -> None:
    path.symlink_to(path.parent / "nowhere.png")


def _duplicate(path: Path, outside: Path) -> None:
    Image.fromarray(noise(12, 10, seed=10)).save(path.parent / "dup_a.png")
    path.write_bytes((path.parent / "dup_a.png").read_bytes())


CASES = {
    "truncated": Case("truncated.png", _truncated, "corrupt_image"),
    "bad_chunk_crc": Case("bad_crc.png", _bad_crc, "corrupt_image"),
    "zero_bytes": Case("zero.jpg", _write(b""), "empty_file"),
    "text_named_jpg": Case("notes.jpg", _write(b"not an image\n" * 20), "not_an_image"),
    "html_named_png": Case(
        "page.png", _write(b"<!DOCTYPE html><html><body>hi</body></html>\n"), "not_an_image"
    ),
    "svg_named_png": Case(
        "vector.png",
        _write(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9"/>'),
        "not_an_image",
    ),
    # over 2x max_pixels: PIL raises at open, from the header alone
    "bomb_header": Case(
        "bomb.png", _write(png_header_only(100_000, 100_000)), "decompression_bomb"
    ),
    # between max_pixels and 2x: PIL only warns; ingest refuses it all the same
    "bomb_header_near_limit": Case(
        "bomb2.png", _write(png_header_only(MAX_PIXELS // 1000 + 1, 1000)), "decompression_bomb"
    ),
    "cmyk_jpeg": Case("cmyk.jpg", _cmyk_jpeg, fmt="JPEG"),
    "png_16bit_grey": Case("grey16.png", _png16, fmt="PNG"),
    "png_16bit_rgb": Case("rgb48.png", _rgb48, fmt="PNG"),
    "palette_transparency": Case("palette.png", _palette_transparent, fmt="PNG"),
    "grey_alpha": Case("grey_alpha.png", _grey_alpha, fmt="PNG"),
    "animated_gif": Case("anim.gif", _animated_gif, fmt="GIF"),
    "animated_webp": Case("anim.webp", _animated_webp, fmt="WEBP"),
    "exif_rotated_jpeg": Case("phone.jpg", _exif_rotated, fmt="JPEG"),
    "webp": Case("lossless.webp", _webp, fmt="WEBP"),
    "jpeg_named_png": Case("actually_jpeg.png", _jpeg_named_png, fmt="JPEG"),
    "unicode_name": Case("café 猫 ünï.png", _plain(11), fmt="PNG"),
    "spaced_name": Case("  two  spaces .png", _plain(12), fmt="PNG"),
    "nested_folders": Case("a/b/c/deep.png", _plain(13), fmt="PNG"),
    "one_pixel": Case("dot.png", _plain(14, (1, 1)), "too_small"),
    "thin_below_min_side": Case("thin.png", _plain(15, (4000, MIN_SIDE - 1)), "too_small"),
    # min_side is the only size rule: an extreme aspect ratio at min_side is kept
    "thin_at_min_side": Case("strip.png", _plain(16, (4000, MIN_SIDE)), fmt="PNG"),
    "duplicate_bytes": Case("dup_b.png", _duplicate, "duplicate_file:{src}/dup_a.png"),
    "link_out_of_folder": Case("escape.png", _link_out, "path_escapes_source"),
    "folder_link_out_of_folder": Case("escape_dir", _folder_link_out, "path_escapes_source"),
    "link_inside_folder": Case("inner_link.png", lambda p, o: _link_to(p, _mkhidden(p)), fmt="PNG"),
    "dangling_link": Case("dangling.png", _dangling, "not_a_file"),
}


def _mkhidden(path: Path) -> Path:
    # the target sits in a hidden folder, so only the link lists it
    (path.parent / ".kept").mkdir(exist_ok=True)
    return path.parent / ".kept" / "real.png"


@dataclass(frozen=True)
class Corpus:
    src: Path
    outside: Path
    expected: dict[str, np.ndarray | None]
    rows: dict[str, dict]  # relative source path -> images.parquet row
    dropped: dict[str, dict]  # relative source path -> dropped row
    opened: list[str]  # every path opened while listing and ingesting


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    base = tmp_path_factory.mktemp("corpus")
    src, outside = base / "src", base / "outside"
    src.mkdir()
    outside.mkdir()
    expected = {}
    for case in CASES.values():
        (src / case.rel).parent.mkdir(parents=True, exist_ok=True)
        expected[case.rel] = case.build(src / case.rel, outside)
    captions = [{"file": c.rel, "caption": f"caption of {c.rel}"} for c in CASES.values()]
    (src / "captions.jsonl").write_text(
        "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in captions), encoding="utf-8"
    )

    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):  # open's own signature
        opened.append(os.fspath(file) if isinstance(file, str | os.PathLike) else repr(file))
        return real_open(file, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", spy)
        mp.setattr(io, "open", spy)  # pathlib's read_bytes goes through io.open
        mp.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        files = list_source(src)
        rows, dropped = ingest_files(files, base / "out", "test", MAX_PIXELS, MIN_SIDE)
    rel = lambda p: Path(p).relative_to(src).as_posix()  # noqa: E731
    return Corpus(
        src,
        outside,
        expected,
        {rel(r["source_path"]): r for r in rows},
        {rel(d["source_path"]): d for d in dropped},
        opened,
    )


def test_corpus_has_at_least_15_classes() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(corpus: Corpus, name: str) -> None:
    case = CASES[name]
    if case.reason is not None:
        assert case.rel not in corpus.rows
        assert corpus.dropped[case.rel]["reason"] == case.reason.format(src=corpus.src)
        return
    assert case.rel not in corpus.dropped, corpus.dropped.get(case.rel)
    row = corpus.rows[case.rel]
    assert row["format"] == case.fmt
    assert row["caption"] == f"caption of {case.rel}"
    with Image.open(row["path"]) as norm:
        assert (norm.format, norm.mode) == ("PNG", "RGB")
        got = np.asarray(norm)
    want = corpus.expected[case.rel]
    assert (row["height"], row["width"]) == want.shape[:2] == got.shape[:2]
    assert np.array_equal(got, want)


def test_every_file_has_exactly_one_outcome(corpus: Corpus) -> None:
    # nothing else in the folder came out (the outside files, the hidden link target, the
    # duplicate's original aside) and no file came out twice
    assert not corpus.rows.keys() & corpus.dropped.keys()
    extra = (corpus.rows.keys() | corpus.dropped.keys()) - {c.rel for c in CASES.values()}
    assert extra == {"dup_a.png"}
    assert "dup_a.png" in corpus.rows


def test_links_out_of_the_folder_are_never_read(corpus: Corpus) -> None:
    assert (corpus.src / "lossless.webp").as_posix() in corpus.opened  # the spy does see reads
    leaked = [p for p in corpus.opened if Path(p).resolve().is_relative_to(corpus.outside)]
    assert not leaked
    # the refused folder link is one entry: what is behind it is not listed
    assert not [r for r in corpus.dropped if r.startswith("escape_dir/")]
    assert "escape_dir" in corpus.dropped


def test_folder_link_inside_is_not_walked_twice(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    Image.fromarray(noise(12, 10)).save(tmp_path / "real" / "a.png")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)  # a cycle: not followed
    assert [s.path.relative_to(tmp_path).as_posix() for s in list_source(tmp_path)] == [
        "real/a.png"
    ]


def test_source_folder_given_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    Image.fromarray(noise(12, 10)).save(tmp_path / "real" / "a.png")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    rows, dropped = ingest_files(
        list_source(tmp_path / "alias"), tmp_path / "out", "test", MAX_PIXELS, MIN_SIDE
    )
    assert (len(rows), dropped) == (1, [])


def test_header_bomb_is_refused_without_decoding(tmp_path: Path) -> None:
    # 10^10 RGB pixels would be 30 GB: refusing it at all shows nothing was allocated
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    (tmp_path / "out").mkdir()
    with pytest.raises(Rejected) as info:
        ingest_file(SourceImage(path, ""), tmp_path / "out", "t", MAX_PIXELS, MIN_SIDE)
    assert info.value.reason == "decompression_bomb"
    assert "10000000000 pixels" in info.value.detail


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"file": "a.png", "caption": null}\n', "must be strings"),
        (b'{"file": 3, "caption": "x"}\n', "must be strings"),
        (b'{"file": "a.png", "caption": "caf\xe9"}\n', "not UTF-8"),
        (b"{not json\n", "expected"),
    ],
)
def test_malformed_captions_line_names_file_and_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    captions = tmp_path / "captions.jsonl"
    captions.write_bytes(b'{"file": "b.png", "caption": "ok"}\n\n' + content)
    with pytest.raises(ValueError) as info:
        list_source(tmp_path)
    assert str(info.value).startswith(f"{captions}:3: ")
    assert problem in str(info.value)
