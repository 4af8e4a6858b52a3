"""End to end: the real DVC pipeline in a fresh copy of the project, on real images."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from benchmark_standins import siuo_folder, vlguard_folder
from helpers import ROOT, commit_all, make_repo_copy, metrics, perf, run_cmd
from PIL import Image
from s3server import seaweedfs

from safeforge.report.card import SCORE_COLUMNS, STAGES  # STAGES: before score, in order
from safeforge.validate import validate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory) -> tuple[Path, str]:
    repo = make_repo_copy(tmp_path_factory.mktemp("dag"))
    for out in ("metrics", "plots", "reports", "dvc.lock"):  # start from nothing
        target = repo / out
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    proc = run_cmd(["dvc", "repro"], repo)
    BUILT_LOCK.update(yaml.safe_load((repo / "dvc.lock").read_text()))  # before tests change it
    BUILT_DEDUP.update(metrics(repo, "dedup"))
    return repo, proc.stdout + proc.stderr


BUILT_LOCK: dict = {}
BUILT_DEDUP: dict = {}


def data_outs(lock: dict) -> dict[str, str]:
    """md5 of every output under data/ in a dvc.lock (a folder's md5 covers each file in it)."""
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"].startswith("data/")
    }


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
        ("data/score/own_test/predictions.parquet", "predictions"),
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
    assert not list((repo / "data").rglob("*.pkl"))


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
    for stage in ("describe", "generate", "embed"):
        m = perf(repo, stage)
        assert m["cache_misses"] == 0 and m["cache_hits"] > 0, (stage, m)


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


def test_a_dedup_threshold_reruns_dedup_and_after_only(built_repo):
    repo, _ = built_repo
    # the baseline is the default build, read when it was made: an earlier test's experiment
    # leaves its outputs in the workspace, while each `exp run -S` starts from the committed params
    before = BUILT_DEDUP
    # 20 of 64 bits: a few different bundled photos now pass for near duplicates
    out = run_cmd(["dvc", "exp", "run", "-S", "dedup.phash_max_distance=20"], repo)
    text = out.stdout + out.stderr
    for upstream in ("ingest", "describe", "generate", "embed"):
        assert f"Running stage '{upstream}'" not in text
    assert "Running stage 'dedup'" in text and "Running stage 'quality'" in text
    after = metrics(repo, "dedup")
    assert after["rows_in"] == before["rows_in"]  # same upstream rows, only the threshold moved
    assert after["rows_out"] < before["rows_out"]
    phash_drops = [m["dropped_by_method"].get("image_phash", 0) for m in (before, after)]
    assert phash_drops[1] > phash_drops[0]


def test_external_benchmarks_are_scored_side_by_side(built_repo, tmp_path):
    repo, _ = built_repo
    siuo, vlguard = siuo_folder(tmp_path / "siuo"), vlguard_folder(tmp_path / "vlguard")
    out = run_cmd(
        [
            "dvc", "exp", "run",
            "-S", "score.benchmarks=[own_test,siuo,vlguard]",
            "-S", f"benchmarks.siuo.root={siuo}",
            "-S", f"benchmarks.vlguard.root={vlguard}",
        ],
        repo,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert "Running stage 'score@siuo'" in text and "Running stage 'score@vlguard'" in text
    for upstream in ("generate", "embed", "train_judge"):
        assert f"Running stage '{upstream}'" not in text
    scores = {b: metrics(repo, f"score/{b}") for b in ("own_test", "siuo", "vlguard")}
    assert (scores["siuo"]["n"], scores["siuo"]["n_unsafe"]) == (9, 9)
    assert (scores["vlguard"]["n"], scores["vlguard"]["n_safe"]) == (13, 4)
    assert set(scores["vlguard"]["by_subset"]) == {"unsafes", "safe_unsafes", "safe_safes"}
    assert perf(repo, "score/siuo")["items_per_second"] > 0
    assert "items_per_second" not in scores["siuo"]
    report = metrics(repo, "report")
    external = [scores["siuo"]["balanced_accuracy"], scores["vlguard"]["balanced_accuracy"]]
    assert report["transfer_benchmarks"] == ["siuo", "vlguard"]
    assert report["transfer_score"] == pytest.approx(sum(external) / 2, abs=1e-4)
    assert "Transfer score" in (repo / "reports/report.md").read_text()
    diff = run_cmd(["dvc", "metrics", "diff", "--json"], repo).stdout
    changed = json.loads(diff)
    assert {"metrics/score/siuo.json", "metrics/score/vlguard.json"} <= set(changed)
    assert "balanced_accuracy" in changed["metrics/score/vlguard.json"]
    assert "transfer_score" in changed["metrics/report.json"]


def test_judges_are_selectable_and_scored_side_by_side(built_repo, tiny_vlm_folder):
    """judge=vlm is fine-tuned by train_judge and clue scores beside it, both through the same
    score stage: a tiny random VLM stands in for Qwen2.5-VL (the mechanics, not the scores)."""
    repo, _ = built_repo
    vlm = str(tiny_vlm_folder)
    out = run_cmd(
        [
            "dvc", "exp", "run",
            "-S", "judge=vlm", "-S", f"judge.model={vlm}", "-S", "judge.epochs=1",
            "-S", "judge.grad_accum=1", "-S", "judge.max_new_tokens=8",
            "-S", "score.judges=[trained,clue]", "-S", f"zero_shot.clue.backend.model={vlm}",
            "-S", "zero_shot.clue.relevance.top_k=2",
            "-S", "zero_shot.clue.relevance.describe_max_tokens=8",
            "-S", "zero_shot.clue.fallback.max_tokens=8",
            "-S", "zero_shot.clue.fallback.summary_max_tokens=8",
        ],
        repo,
    )  # fmt: skip
    text = out.stdout + out.stderr
    for upstream in ("generate", "embed", "dedup", "quality", "split"):
        assert f"Running stage '{upstream}'" not in text
    assert "Running stage 'train_judge'" in text and "Running stage 'score@own_test'" in text
    trained = metrics(repo, "train_judge")
    assert trained["judge"] == "vlm" and trained["steps"] > 0
    assert (repo / "data/train_judge/judge/adapter/adapter_model.safetensors").exists()
    score = metrics(repo, "score/own_test")
    clue = score["other_judges"]["clue"]
    assert score["judge"] == "vlm" and clue["judge"] == "clue"
    assert score["n"] == clue["n"] > 0
    assert score["judge_stats"]["generations"] == score["n"]
    assert clue["judge_stats"]["calls"] > 0
    for name in ("predictions.parquet", "predictions.clue.parquet"):
        predictions = pl.read_parquet(repo / "data/score/own_test" / name)
        validate(predictions, "predictions", where=name)
        assert predictions["p_unsafe"].is_between(0, 1).all()
    report = (repo / "reports/report.md").read_text()
    assert "### Judges side by side" in report and "| vlm balanced acc. |" in report
    assert set(metrics(repo, "report")["transfer_by_judge"]) == {"vlm", "clue"}


def test_a_listed_benchmark_without_a_root_fails_clearly(built_repo):
    repo, _ = built_repo
    before = (repo / "params.yaml").read_text()
    try:
        out = run_cmd(
            ["dvc", "exp", "run", "-S", "score.benchmarks=[own_test,salad]"], repo, check=False
        )
        assert out.returncode != 0
        assert "benchmarks.salad.root is not set" in out.stdout + out.stderr
    finally:
        (repo / "params.yaml").write_text(before)


def test_a_model_backend_over_http_writes_the_dataset_and_prompt_edits_rerun_little(built_repo):
    """`-S generator=openai` against a real loopback server (scripted to answer the chain
    well), then `-S prompts=v2`, which edits only the queries and guidance steps."""
    from backends.chat_server import chat_server

    repo, _ = built_repo
    before = (repo / "params.yaml").read_text()
    try:
        with chat_server("rms") as url:
            server = ["-S", "generator=openai", "-S", f"generator.base_url={url}"]
            server += ["-S", "generator.api_key_env=null", "-S", "generator.model=scripted"]
            run_cmd(["dvc", "exp", "run", *server], repo)
            first = metrics(repo, "generate")
            assert first["rows_in"] == first["rows_out"] + first["rows_dropped"]
            assert first["records_out"] > 0 and first["malformed_outputs"] == {}
            records = pl.read_parquet(repo / "data/generate/records.parquet")
            assert set(records["generator"]) == {"scripted@main"}
            assert {"unsafe", "benign"} <= set(records["query_type"])
            assert (repo / "metrics/score/own_test.json").exists()  # the judge trained on it

            out = run_cmd(["dvc", "exp", "run", *server, "-S", "prompts=v2"], repo)
            assert "Running stage 'generate'" in out.stdout + out.stderr
            second = perf(repo, "generate")
            # analyse and contrast prompts are unchanged in v2: only queries and guidance ask again
            risks = first["records_by_label"]["unsafe"]
            assert second["cache_misses"] == 2 * risks
            assert second["cache_hits"] > 0
    finally:
        (repo / "params.yaml").write_text(before)
