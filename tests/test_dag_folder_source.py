"""End to end on a folder source (`source=folder`): new images, a killed stage, bad files and
bad config, each in its own small workspace with its own row cache."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from helpers import make_repo_copy, metrics, perf, run_cmd
from polars.testing import assert_frame_equal

pytestmark = pytest.mark.slow


def source_repo(tmp_path: Path, images: list[Path]) -> Path:
    """A workspace whose source is a plain folder of the given images."""
    repo = make_repo_copy(tmp_path / "repo")
    folder = repo / "my_images"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    run_cmd(
        [sys.executable, "-m", "safeforge.cli", "params", "source=folder", "source.dir=my_images"],
        repo,
    )
    return repo


@pytest.fixture(scope="module")
def sample_pngs(tmp_path_factory):
    from safeforge.sources.skimage_samples import export

    out = tmp_path_factory.mktemp("sample_pngs")
    export(out, min_images=1)
    return sorted(out.glob("*.png"))


def test_adding_one_image_computes_only_its_rows(tmp_path, sample_pngs):
    cache = {"SAFEFORGE_CACHE_DIR": str(tmp_path / "cache")}
    images = sample_pngs[:5]
    repo = source_repo(tmp_path, images[:4])
    run_cmd(["dvc", "repro", "describe"], repo, env=cache)
    assert perf(repo, "describe")["cache_misses"] == 8  # 4 images x (OCR + NSFW)

    shutil.copy(images[4], repo / "my_images" / images[4].name)
    run_cmd(["dvc", "repro", "describe"], repo, env=cache)
    m = perf(repo, "describe")
    assert (m["cache_misses"], m["cache_hits"]) == (2, 8)


def test_killed_stage_resumes_and_matches_an_uninterrupted_run(tmp_path, sample_pngs):
    images = sample_pngs[:20]
    repo = source_repo(tmp_path, images)
    run_cmd(["dvc", "repro", "ingest"], repo)

    reference_cache = {"SAFEFORGE_CACHE_DIR": str(tmp_path / "reference-cache")}
    run_cmd([sys.executable, "-m", "stages.describe"], repo, env=reference_cache)
    reference = pl.read_parquet(repo / "data/describe/descriptions.parquet")
    (repo / "data/describe/descriptions.parquet").unlink()

    cache_dir = tmp_path / "cache"
    env = {**reference_cache, "SAFEFORGE_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.describe"],
        cwd=repo,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db, deadline = cache_dir / "rows.sqlite", time.time() + 120
    while time.time() < deadline:
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                if conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0] >= 8:
                    break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        done = conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    assert 8 <= done < 40, f"the kill should land mid-run, {done} of 40 rows were cached"
    assert not (repo / "data/describe/descriptions.parquet").exists(), "no half-written output"

    run_cmd([sys.executable, "-m", "stages.describe"], repo, env=env)
    m = perf(repo, "describe")
    assert m["cache_misses"] == 40 - done and m["cache_hits"] == done
    assert_frame_equal(pl.read_parquet(repo / "data/describe/descriptions.parquet"), reference)


def test_bad_files_are_quarantined_not_fatal(tmp_path, sample_pngs):
    images = sample_pngs[:2]
    repo = source_repo(tmp_path, images)
    (repo / "my_images" / "notes.txt").write_text("not an image")
    (repo / "my_images" / "broken.png").write_bytes(images[0].read_bytes()[:500])
    shutil.copy(images[0], repo / "my_images" / "copy.png")
    run_cmd(["dvc", "repro", "ingest"], repo)
    m = metrics(repo, "ingest")
    assert (m["rows_in"], m["rows_out"]) == (5, 2)
    assert m["dropped"] == {"corrupt_image": 1, "duplicate_file": 1, "not_an_image": 1}
    reasons = pl.read_parquet(repo / "data/ingest/dropped.parquet")
    assert set(reasons["row_id"].str.split("/").list.last()) == {
        "notes.txt",
        "broken.png",
        "copy.png",
    }


def test_bad_config_fails_with_a_clear_message(tmp_path, sample_pngs):
    repo = source_repo(tmp_path, sample_pngs[:1])
    params = (repo / "params.yaml").read_text().replace("min_side: 8", "min_sidee: 8")
    (repo / "params.yaml").write_text(params)
    out = run_cmd(["dvc", "repro", "ingest"], repo, check=False)
    assert out.returncode != 0
    assert "ingest.min_side" in out.stdout + out.stderr
