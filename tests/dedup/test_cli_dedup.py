"""`safeforge dedup images DIR`: image dedup on any folder, through the real command."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import run_cmd
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
COPIES = ("half.png", "q30.jpg", "crop.jpg")
CLI = [sys.executable, "-m", "safeforge.cli", "dedup", "images"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four photos, each with three smaller copies (half size, JPEG q30, 5% cut off each side),
    an exact byte copy in a sub-folder, a truncated JPEG and a link to a photo outside."""
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        photo = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = photo.size
        photo.save(root / f"{name}.png")
        photo.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(root / f"{name}_half.png")
        # q30 at 0.8 size: every copy is smaller than its original, which must be the keeper
        photo.resize((w * 4 // 5, h * 4 // 5)).save(root / f"{name}_q30.jpg", quality=30)
        dw, dh = w // 20, h // 20
        photo.crop((dw, dh, w - dw, h - dh)).save(root / f"{name}_crop.jpg", quality=90)
    (root / "nested").mkdir()
    shutil.copy(root / "coffee.png", root / "nested" / "coffee_copy.png")
    raw = (root / "chelsea_q30.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(raw[: len(raw) // 3])
    outside = tmp_path_factory.mktemp("outside") / "camera.png"
    Image.fromarray(data.camera()).save(outside)
    (root / "escape.png").symlink_to(outside)
    return root


def dedup(folder: Path, *args: str, check: bool = True):
    return run_cmd([*CLI, str(folder), *args], cwd=folder.parent, check=check)


def joined(report: dict) -> dict[str, dict]:
    """{member path: member} with the keeper under "keeper"."""
    return {
        m["path"]: {**m, "keeper": c["keeper"]} for c in report["clusters"] for m in c["members"]
    }


@pytest.fixture(scope="module")
def default_report(folder: Path) -> dict:
    return json.loads(dedup(folder, "--json").stdout)


def test_clusters_each_photo_with_its_copies_the_largest_kept(default_report: dict) -> None:
    report = default_report
    assert report["images"] == 17
    assert [c["keeper"] for c in report["clusters"]] == [f"{n}.png" for n in sorted(PHOTOS)]
    members = joined(report)
    expected = {f"{n}_{c}": f"{n}.png" for n in PHOTOS for c in COPIES}
    expected["nested/coffee_copy.png"] = "coffee.png"
    assert {p: m["keeper"] for p, m in members.items()} == expected
    assert members["nested/coffee_copy.png"]["method"] == "image_exact"
    assert members["nested/coffee_copy.png"]["phash_distance"] == 0
    for member in members.values():
        assert member["method"] in ("image_exact", "image_phash", "image_layout")
        assert 0.7 <= member["score"] <= 1  # conf dedup.min_match_score
        assert 0 <= member["phash_distance"] <= 64
    assert report["params"]["phash_max_distance"] == 12  # conf/config.yaml


def test_reports_the_corrupt_file_and_the_link_out(default_report: dict) -> None:
    reasons = {u["path"]: u["reason"] for u in default_report["unreadable"]}
    assert reasons == {"broken.jpg": "corrupt_image", "escape.png": "path_escapes_source"}
    assert all(u["detail"] for u in default_report["unreadable"])


def test_overrides_narrow_what_joins(folder: Path, default_report: dict) -> None:
    strict = dedup(
        folder, "--json", "--workers", "1",
        "--set", "dedup.phash_max_distance=0", "--set", "dedup.layout_min_cosine=null",
    )  # fmt: skip
    report = json.loads(strict.stdout)
    assert report["params"]["phash_max_distance"] == 0
    assert report["params"]["layout_min_cosine"] is None
    members, before = joined(report), joined(default_report)
    assert set(members) < set(before)  # fewer joins, and none that were not there
    assert not any(p.endswith("_crop.jpg") for p in members)  # crops move pHash 10+ bits
    assert members["nested/coffee_copy.png"]["method"] == "image_exact"
    for member in members.values():
        assert member["method"] in ("image_exact", "image_phash")
        assert member["phash_distance"] == 0


def test_human_output_ends_with_the_summary(folder: Path, default_report: dict) -> None:
    lines = dedup(folder).stdout.splitlines()
    assert "keep coffee.png" in lines
    assert any("nested/coffee_copy.png" in line and "image_exact" in line for line in lines)
    assert any(line.strip().startswith("broken.jpg") for line in lines)
    duplicates = sum(len(c["members"]) for c in default_report["clusters"])
    assert lines[-1] == f"17 images, 4 clusters, {duplicates} duplicates, 2 unreadable"


def test_an_unknown_key_or_folder_fails_in_one_line(folder: Path) -> None:
    bad = dedup(folder, "--set", "dedup.typo=1", check=False)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "dedup.typo" in bad.stderr and "dedup.phash_max_distance" in bad.stderr
    gone = dedup(folder / "gone", check=False)
    assert gone.returncode == 2
    assert gone.stderr.count("\n") == 1 and "gone" in gone.stderr
