"""Ingest: listing a source folder, and verifying/normalising real image files built with PIL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from safeforge.images.ingest import (
    IngestedImage,
    Rejected,
    SourceImage,
    ingest_file,
    list_source,
)

BIG = 10**8  # a max_pixels no test image comes near
MIN_SIDE = 8


@pytest.fixture(autouse=True)
def _restore_pil_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # ingest_file sets the process-wide Image.MAX_IMAGE_PIXELS; put it back after every test
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def ingest(path: Path, out: Path, max_pixels: int = BIG, min_side: int = MIN_SIDE):
    out.mkdir(exist_ok=True)
    return ingest_file(SourceImage(path, "cap"), out, "test", max_pixels, min_side)


def rejection(path: Path, out: Path, **kw) -> Rejected:
    with pytest.raises(Rejected) as info:
        ingest(path, out, **kw)
    assert not list(out.glob("*.png")), "a rejected file must not leave a normalised copy"
    return info.value


# ---------------------------------------------------------------- list_source / captions


def test_list_source_sorted_recursive_skips_hidden_and_reads_captions(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / ".hidden_dir").mkdir()
    for rel in ("b.png", "a.jpg", "sub/c.png", "sub/deeper/d.png", "sub/.e.png"):
        (src / rel).write_bytes(b"x")
    (src / ".hidden.png").write_bytes(b"x")
    (src / ".hidden_dir" / "f.png").write_bytes(b"x")
    (src / "captions.jsonl").write_text(
        json.dumps({"file": "a.jpg", "caption": "a cat"})
        + "\n\n"  # blank lines are allowed
        + json.dumps({"file": "sub/c.png", "caption": "a mug"})
        + "\n"
        + json.dumps({"file": "no_caption.png"})
        + "\n",
        encoding="utf-8",
    )
    listed = list_source(src)
    rel = [s.path.relative_to(src).as_posix() for s in listed]
    # sorted by full path; captions.jsonl and every hidden file or folder left out
    assert rel == ["a.jpg", "b.png", "sub/c.png", "sub/deeper/d.png"]
    assert {r: s.caption for r, s in zip(rel, listed, strict=True)} == {
        "a.jpg": "a cat",
        "b.png": "",
        "sub/c.png": "a mug",
        "sub/deeper/d.png": "",
    }


def test_list_source_without_captions_file(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"x")
    assert [(s.path.name, s.caption) for s in list_source(tmp_path)] == [("x.png", "")]


def test_list_source_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_source(tmp_path / "nope")


@pytest.mark.parametrize(
    "bad_line",
    [
        "{not json",  # JSONDecodeError
        '{"caption": "no file key"}',  # KeyError
        '{"file": ["a", "list"], "caption": "x"}',  # TypeError (unhashable key)
        pytest.param('["a.png", "a list"]'),
        pytest.param('"just a string"'),
        pytest.param("null"),
    ],
)
def test_malformed_captions_name_file_and_line(tmp_path: Path, bad_line: str) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    good = json.dumps({"file": "a.png", "caption": "ok"})
    captions = tmp_path / "captions.jsonl"
    captions.write_text(f"{good}\n\n{bad_line}\n{good}\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        list_source(tmp_path)
    # line numbers count from 1 and include the blank line: the bad line is line 3
    assert f"{captions}:3:" in str(info.value)


# ---------------------------------------------------------------- valid images


def test_valid_png_is_normalised(tmp_path: Path) -> None:
    pixels = noise(40, 30)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    data = path.read_bytes()
    out = tmp_path / "out"

    got = ingest(path, out)

    assert isinstance(got, IngestedImage)
    assert got.image_id == hashlib.sha256(data).hexdigest()
    assert got.path == (out / f"{got.image_id}.png").as_posix()
    assert got.source_path == path.as_posix()
    assert (got.source, got.caption, got.format) == ("test", "cap", "PNG")
    assert (got.width, got.height, got.n_bytes) == (40, 30, len(data))
    with Image.open(got.path) as norm:
        assert (norm.format, norm.mode, norm.size) == ("PNG", "RGB", (40, 30))
        assert np.array_equal(np.asarray(norm), pixels)
    # only the normalised copy is in out/ (no temp file left behind)
    assert [p.name for p in out.iterdir()] == [f"{got.image_id}.png"]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # stored 80x40, blue with a red 10x10 block in the stored top-left corner
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display = stored image rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif, quality=95)

    got = ingest(path, tmp_path / "out")

    assert got.format == "JPEG"
    assert (got.width, got.height) == (40, 80)  # swapped
    with Image.open(got.path) as norm:
        arr = np.asarray(norm).astype(int)
    assert norm.size == (40, 80)
    # rotating clockwise moves the stored top-left corner to the top-right
    top_right, top_left = arr[2:8, -8:-2].mean(axis=(0, 1)), arr[2:8, 2:8].mean(axis=(0, 1))
    assert top_right[0] > 200 and top_right[2] < 60  # red
    assert top_left[0] < 60 and top_left[2] > 200  # blue


@pytest.mark.parametrize("mode", ["P", "L", "RGBA", "LA", "1", "I;16"])
def test_modes_convert_to_rgb(tmp_path: Path, mode: str) -> None:
    src = Image.fromarray(noise(24, 16, seed=1))
    img = src.quantize(16) if mode == "P" else src.convert(mode)
    assert img.mode == mode
    path = tmp_path / "m.png"
    img.save(path)
    got = ingest(path, tmp_path / "out")
    with Image.open(got.path) as norm:
        assert (norm.mode, norm.size) == ("RGB", (24, 16))
        if mode in ("P", "L", "RGBA"):
            # same colours as PIL's own conversion of the source file to RGB
            with Image.open(path) as orig:
                assert np.array_equal(np.asarray(norm), np.asarray(orig.convert("RGB")))


def test_pixel_sha256_ignores_container_and_metadata(tmp_path: Path) -> None:
    pixels = noise(32, 32, seed=2)
    plain, tagged, bmp = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.bmp"
    Image.fromarray(pixels).save(plain)
    info = PngInfo()
    info.add_text("Comment", "re-saved with different metadata")
    Image.fromarray(pixels).save(tagged, pnginfo=info, compress_level=9)
    Image.fromarray(pixels).save(bmp)
    got = [ingest(p, tmp_path / "out") for p in (plain, tagged, bmp)]
    assert len({g.image_id for g in got}) == 3  # different bytes, different ids
    assert len({g.pixel_sha256 for g in got}) == 1  # same decoded pixels
    # and it is really a hash of the pixels: one changed pixel changes it
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(tmp_path / "d.png")
    assert ingest(tmp_path / "d.png", tmp_path / "out").pixel_sha256 != got[0].pixel_sha256


def test_same_pixels_different_shape_differ(tmp_path: Path) -> None:
    # 2x8 and 8x2 images with the same raw bytes must not collide
    flat = noise(16, 1, seed=3).reshape(-1)
    Image.fromarray(flat.reshape(2, 8, 3)).save(tmp_path / "wide.png")
    Image.fromarray(flat.reshape(8, 2, 3)).save(tmp_path / "tall.png")
    a = ingest(tmp_path / "wide.png", tmp_path / "out", min_side=1)
    b = ingest(tmp_path / "tall.png", tmp_path / "out", min_side=1)
    assert a.pixel_sha256 != b.pixel_sha256


# ---------------------------------------------------------------- rejections


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    assert rejection(tmp_path / "e.png", tmp_path / "out").reason == "empty_file"


def test_text_file(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("definitely not an image\n" * 20)
    assert rejection(tmp_path / "notes.jpg", tmp_path / "out").reason == "not_an_image"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    whole = tmp_path / f"whole.{fmt.lower()}"
    Image.fromarray(noise(64, 48)).save(whole, format=fmt)
    data = whole.read_bytes()
    half = tmp_path / f"half.{fmt.lower()}"
    half.write_bytes(data[: len(data) // 2])
    err = rejection(half, tmp_path / "out")
    assert err.reason == "corrupt_image"
    assert str(half) in err.detail


@pytest.mark.parametrize(
    "max_pixels",
    [
        5000,  # 100x100 = 10000 = exactly 2x: PIL only warns; ingest must still reject
        3000,  # 10000 > 2 * 3000: PIL raises DecompressionBombError
    ],
)
def test_decompression_bomb(tmp_path: Path, max_pixels: int) -> None:
    path = tmp_path / "bomb.png"
    Image.new("RGB", (100, 100), (10, 20, 30)).save(path)
    assert rejection(path, tmp_path / "out", max_pixels=max_pixels).reason == ("decompression_bomb")
    # under the limit the same file is fine
    assert ingest(path, tmp_path / "ok", max_pixels=10_000).width == 100


def test_too_small(tmp_path: Path) -> None:
    path = tmp_path / "thin.png"
    Image.fromarray(noise(50, 7)).save(path)  # min side 7 < 8
    err = rejection(path, tmp_path / "out", min_side=8)
    assert err.reason == "too_small"
    assert "50x7" in err.detail
    assert ingest(path, tmp_path / "ok", min_side=7).height == 7


def test_too_small_is_judged_after_rotation(tmp_path: Path) -> None:
    # stored 6x30 with orientation 6 -> displayed 30x6: min side is 6 either way, but the
    # message reports the displayed (rotated) size
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "r.jpg"
    Image.fromarray(noise(6, 30)).save(path, exif=exif)
    assert "30x6" in rejection(path, tmp_path / "out", min_side=8).detail


def test_ingest_does_not_leak_pil_pixel_limit(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "a.png"
    Image.fromarray(noise(20, 20)).save(path)
    ingest(path, tmp_path / "out", max_pixels=1000)
    assert before == Image.MAX_IMAGE_PIXELS
