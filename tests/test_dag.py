"""End to end: the real DVC pipeline in a fresh copy of the project, on real images: the build,
its reproducibility, the team remote, the row cache and a queued sweep. Experiments that change
what the DAG computes are in test_dag_experiments.py (a build of their own, so the suite's two
workers share the long end-to-end work)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from helpers import ROOT, build_dag, commit_all, data_outs, metrics, perf, run_cmd
from PIL import Image
from s3server import seaweedfs

from safeforge.report.card import SCORE_COLUMNS, STAGES  # STAGES: before score, in order
from safeforge.validate import validate

# the module's fixture builds the whole DAG from an empty row cache (augment's OCR, evaluate's
# SmolLM2 replies): about 10 minutes while the other xdist worker builds its own
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory) -> tuple[Path, str]:
    repo, output = build_dag(tmp_path_factory.mktemp("dag"))
    BUILT_LOCK.update(yaml.safe_load((repo / "dvc.lock").read_text()))  # before tests change it
    return repo, output


BUILT_LOCK: dict = {}


def test_a_clean_build_reproduces_the_committed_dvc_lock(built_repo):
    """Reproducible outputs: a fresh copy with an empty row cache (every model call made again)
    writes every data/ output byte for byte as the build that committed dvc.lock did."""
    committed = data_outs(yaml.safe_load((ROOT / "dvc.lock").read_text()))
    built = data_outs(BUILT_LOCK)
    assert sorted(built) == sorted(committed)
    differ = sorted(p for p in built if built[p] != committed[p])
    assert not differ, (
        f"a clean build differs from the committed dvc.lock in {differ}: commit the dvc.lock "
        "that `dvc repro` writes after a change, or find what is not deterministic"
    )


def test_repro_builds_every_artifact_validated_and_accounted(built_repo):
    repo, _ = built_repo
    for stage in STAGES:
        m = metrics(repo, stage)
        assert m["rows_in"] == m["rows_out"] + sum(m["dropped"].values()), stage
        # timings and cache counts change every run: perf/, never in what `dvc metrics diff` shows
        assert not {"seconds", "rows_per_second", "cache_hits", "cache_misses"} & set(m), stage
        assert perf(repo, stage)["seconds"] > 0, stage
    assert metrics(repo, "samples")["rows_out"] >= 15
    for path, suite in [
        ("data/ingest/images.parquet", "images"),
        ("data/describe/descriptions.parquet", "descriptions"),
        ("data/generate/records.parquet", "records"),
        ("data/embed/features.parquet", "features"),
        ("data/embed/image_features.parquet", "image_features"),
        ("data/dedup/kept.parquet", "kept"),
        ("data/split/dataset.parquet", "splits"),
        ("data/augment/variants.parquet", "variants"),
        ("data/score/own_test/predictions.parquet", "predictions"),
        ("data/evaluate/own_test/responses.parquet", "responses"),
    ]:
        validate(pl.read_parquet(repo / path), suite, where=path)

    dataset = pl.read_parquet(repo / "data/split/dataset.parquet")
    assert set(dataset["label"]) == {"safe", "unsafe"}
    assert (
        dataset.group_by("image_id")
        .agg(pl.col("split").n_unique())
        .filter(pl.col("split") > 1)
        .height
        == 0
    )
    assert (dataset["query_type"] == "contrast").sum() > 0
    # every dropped row is kept with its reason
    dropped = pl.read_parquet(repo / "data/dedup/dropped.parquet")
    assert dropped.height == sum(metrics(repo, "dedup")["dropped"].values())
    assert dropped["reason"].str.starts_with("duplicate_of:").all()

    score = json.loads((repo / "metrics/score/own_test.json").read_text())
    for key in SCORE_COLUMNS:
        assert key in score
    assert score["auroc"] is not None and score["balanced_accuracy"] > 0.5
    report = (repo / "reports/report.md").read_text()
    assert "## Scoreboard" in report and "own_test" in report
    assert (repo / "data/train_judge/judge/model.safetensors").exists()
    # the train split's unsafe and benign records, typeset and captioned, read back by OCR and
    # learnt by the probe's reader head; val and test are never augmented
    variants = pl.read_parquet(repo / "data/augment/variants.parquet")
    train = dataset.filter(pl.col("split") == "train")
    assert set(variants["source_record_id"]) == set(
        train.filter(pl.col("query_type") != "contrast")["record_id"]
    )
    assert metrics(repo, "augment")["mean_read_back"] > 0.9
    assert metrics(repo, "train_judge")["train_variant_rows"] == variants.height
    assert (repo / "data/train_judge/judge/reader/model.safetensors").exists()
    assert not list((repo / "data").rglob("*.pkl"))
    # a model's own replies: SmolLM2 (packaged, CPU, text only) answers own_test, the heuristic
    # rater rates every reply, and the report says who answered and who rated
    evaluated = metrics(repo, "evaluate/own_test")
    assert evaluated["rows_in"] == evaluated["rows_out"] == score["n"]
    assert evaluated["model"]["model"] == "smollm2" and evaluated["model_sees_images"] is False
    assert evaluated["rater_is_heuristic"] is True and evaluated["unrated"] == 0
    assert sum(evaluated["by_rating"].values()) == evaluated["items"]
    responses = pl.read_parquet(repo / "data/evaluate/own_test/responses.parquet")
    assert responses["response"].str.len_chars().min() > 0
    assert metrics(repo, "evaluate/salad")["skipped"] == "benchmarks.salad.root is not set"
    assert "## Model responses" in report and "rater heuristic" in report
    assert "Not evaluated on this machine: mmsafeaware, salad" in report


def test_second_repro_skips_every_stage(built_repo):
    repo, _ = built_repo
    out = run_cmd(["dvc", "repro"], repo)
    text = out.stdout + out.stderr
    assert "Running stage" not in text
    assert "Data and pipelines are up to date" in text


# ---- the team remote (S3) and the shared row cache: push, clone, pull, nothing reruns -------
def test_a_clone_pulls_the_build_and_the_row_cache_from_s3_and_reruns_nothing(built_repo, tmp_path):
    """README "Team remote (S3)": the built state pushed to a real S3 server (SeaweedFS) is
    pulled into a git clone byte for byte, and `dvc repro` there has nothing to do; the row
    cache pushed beside it makes a forced model stage in the clone compute nothing."""
    repo, _ = built_repo
    clone, rows = tmp_path / "clone", tmp_path / "clone-row-cache"
    seconds: dict[str, float] = {}

    def timed(what: str, args: list[str], cwd: Path, env: dict) -> str:
        start = time.perf_counter()
        out = run_cmd(args, cwd, env=env)
        seconds[what] = time.perf_counter() - start
        return out.stdout + out.stderr

    with seaweedfs(tmp_path / "s3") as s3:
        env = s3.env()
        run_cmd(["dvc", "remote", "add", "-d", "store", f"s3://{s3.bucket}/dag"], repo)
        try:
            run_cmd(
                ["dvc", "remote", "modify", "--local", "store", "endpointurl", s3.endpoint], repo
            )
            commit_all(repo, "the build, and its remote")
            timed("dvc push", ["dvc", "push"], repo, env)
            timed("safeforge cache push", ["safeforge", "cache", "push"], repo, env)

            run_cmd(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
            run_cmd(
                ["dvc", "remote", "modify", "--local", "store", "endpointurl", s3.endpoint], clone
            )
            timed("dvc pull", ["dvc", "pull"], clone, env)
            text = timed("dvc repro", ["dvc", "repro"], clone, env)
            assert "Running stage" not in text and "Data and pipelines are up to date" in text, text
            status = run_cmd(["dvc", "status"], clone, env=env)
            assert "Data and pipelines are up to date" in status.stdout, status.stdout
            assert file_digests(clone / "data") == file_digests(repo / "data")

            clone_env = {**env, "SAFEFORGE_CACHE_DIR": str(rows)}
            pulled = timed("safeforge cache pull", ["safeforge", "cache", "pull"], clone, clone_env)
            assert "new entries" in pulled, pulled
            run_cmd(["dvc", "repro", "-f", "-s", "describe"], clone, env=clone_env)
        finally:
            run_cmd(["dvc", "remote", "remove", "--local", "store"], repo, check=False)
            run_cmd(["dvc", "remote", "remove", "store"], repo, check=False)
    counts = perf(clone, "describe")
    assert counts["cache_misses"] == 0 and counts["cache_hits"] > 0, counts
    sizes = {"data/": tree_bytes(repo / "data"), "row cache": (rows / "rows.sqlite").stat().st_size}
    print("team remote:", {k: f"{v:.1f} s" for k, v in seconds.items()}, sizes)


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_forced_rerun_of_model_stages_computes_nothing(built_repo):
    repo, _ = built_repo
    run_cmd(["dvc", "repro", "--force", "--single-item", "describe"], repo)
    run_cmd(["dvc", "repro", "--force", "--single-item", "generate"], repo)
    run_cmd(["dvc", "repro", "--force", "--single-item", "embed"], repo)
    run_cmd(["dvc", "repro", "--force", "--single-item", "augment"], repo)
    for stage in ("describe", "generate", "embed", "augment"):
        m = perf(repo, stage)
        assert m["cache_misses"] == 0 and m["cache_hits"] > 0, (stage, m)
    assert perf(repo, "augment")["perception_cache_misses"] == 0


def test_a_queued_sweep_runs_in_parallel_reruns_from_generate_and_shares_the_row_cache(
    built_repo,
):
    """The README's sweep recipe: queue a generate param at two values, run two workers, show
    the table. Each experiment reruns generate and what follows, nothing before, and asks the
    models for nothing: the build's row cache (shared through SAFEFORGE_CACHE_DIR) has it all."""
    repo, _ = built_repo
    commit_all(repo, "the build")  # experiments branch from a commit: the built dvc.lock in it
    run_cmd(["dvc", "exp", "run", "--queue", "-S", "generate.top_k=1,2"], repo)
    run_cmd(["dvc", "queue", "start", "-j", "2"], repo)
    deadline = time.time() + 600
    while re.search(r"Running|Queued", run_cmd(["dvc", "queue", "status"], repo).stdout):
        assert time.time() < deadline, "the queued sweep did not finish in 10 minutes"
        time.sleep(2)
    status = run_cmd(["dvc", "queue", "status"], repo).stdout
    assert status.count("Success") == 2, status
    table = run_cmd(["dvc", "exp", "show", "--md", "--only-changed"], repo).stdout
    assert "generate.top_k" in table
    refs = run_cmd(
        ["git", "for-each-ref", "--format=%(refname:lstrip=-1) %(objectname)", "refs/exps"], repo
    )
    experiments = dict(line.split() for line in refs.stdout.splitlines())
    assert len(experiments) == 2
    for name, sha in experiments.items():
        log = run_cmd(["dvc", "queue", "logs", name], repo).stdout
        assert "Running stage 'generate'" in log and "Running stage 'dedup'" in log, name
        for upstream in ("samples", "ingest", "describe"):
            assert f"Running stage '{upstream}'" not in log, (name, upstream)
        for stage in ("generate", "embed"):
            run_perf = json.loads(run_cmd(["git", "show", f"{sha}:perf/{stage}.json"], repo).stdout)
            assert run_perf["cache_misses"] == 0 and run_perf["cache_hits"] > 0, (name, run_perf)
    top_k = {
        json.loads(run_cmd(["git", "show", f"{sha}:metrics/generate.json"], repo).stdout)[
            "records_out"
        ]
        for sha in experiments.values()
    }
    assert len(top_k) == 2, "top_k=1 and top_k=2 should write different numbers of records"
    # ...and the pull-request report compares the two experiments by name
    first, second = sorted(experiments)
    run_cmd(["safeforge", "pr-report", "--base", first, "--head", second, "--out", "sweep"], repo)
    report = (repo / "sweep/report.md").read_text()
    assert "generate.top_k" in report and "records_out" in report
    pngs = list((repo / "sweep/plots").glob("*.png"))
    assert pngs and all(Image.open(p).size[0] > 100 for p in pngs)
