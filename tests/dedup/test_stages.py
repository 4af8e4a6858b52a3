"""The dedup and quality stages as DVC runs them, on synthetic inputs with planted duplicates
(benchmarks/synthetic_rows.py): every matcher fires, nothing is lost, bad input is named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from benchmarks.synthetic_rows import write_inputs
from safeforge import io

REPO = Path(__file__).resolve().parents[2]


def run_stage(stage: str, workspace: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_dedup_then_quality_on_planted_duplicates(workspace: Path) -> None:
    write_inputs(workspace, 4000, seed=1)
    for stage in ("dedup", "quality"):
        done = run_stage(stage, workspace)
        assert done.returncode == 0, done.stderr
    dedup = io.read_json(workspace / "metrics/dedup.json")
    assert dedup["rows_in"] == 4000 == dedup["rows_out"] + dedup["rows_dropped"]
    assert set(dedup["dropped_by_method"]) == {
        "image_exact",
        "image_phash",
        "image_layout",
        "text_exact",
        "text_minhash",
    }
    dropped = pl.read_parquet(workspace / "data/dedup/dropped.parquet")
    assert dropped.height == dedup["rows_dropped"]
    assert dropped["reason"].str.starts_with("duplicate_of:").all()
    kept = pl.read_parquet(workspace / "data/dedup/kept.parquet")
    # a keeper is never dropped, and every dropped row names a keeper that exists
    keepers = dropped["reason"].str.strip_prefix("duplicate_of:")
    assert keepers.is_in(pl.concat([kept["image_id"], kept["record_id"]]).implode()).all()
    clusters = pl.read_csv(workspace / "plots/dedup/clusters.csv")
    assert clusters["clusters"].sum() == dedup["duplicate_clusters"] > 0

    quality = io.read_json(workspace / "metrics/quality.json")
    assert quality["rows_in"] == dedup["rows_out"]
    assert quality["rows_in"] == quality["rows_out"] + quality["rows_dropped"]
    assert {"image_blank", "image_blurry", "query_ignores_image"} <= set(quality["dropped"])
    hist = pl.read_csv(workspace / "plots/quality/hist/blur_variance.csv")
    assert hist["rows"].sum() == quality["rows_in"]


def test_all_duplicates_keep_one_record(workspace: Path) -> None:
    write_inputs(workspace, 40, seed=2)
    path = workspace / "data/generate/records.parquet"
    records = pl.read_parquet(path)
    first = records.row(0, named=True)
    records = records.with_columns(
        image_id=pl.lit(first["image_id"]), query=pl.lit(first["query"]), label=pl.lit("unsafe")
    )
    io.write_parquet(path, records)
    features = workspace / "data/embed/features.parquet"
    table = pl.read_parquet(features)
    io.write_parquet(features, table.with_columns(pl.col("query_minhash").first()))
    assert run_stage("dedup", workspace).returncode == 0
    kept = pl.read_parquet(workspace / "data/dedup/kept.parquet")
    assert kept.height == 1
    assert io.read_json(workspace / "metrics/dedup.json")["dropped"] == {"duplicate_of": 39}


def test_records_without_any_features_stop_the_stage_with_the_reason(workspace: Path) -> None:
    write_inputs(workspace, 40, seed=3)
    images = workspace / "data/embed/image_features.parquet"
    io.write_parquet(images, pl.read_parquet(images).head(0))  # every image failed
    done = run_stage("dedup", workspace)
    assert done.returncode == 1
    assert "dedup kept none of 40 records" in done.stderr
    assert "missing_features" in done.stderr
