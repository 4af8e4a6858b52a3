"""End to end, experiments on a built DAG: a threshold, external benchmarks, judges side by
side, a model backend over HTTP. Each `dvc exp run` reruns only what its params reach."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import polars as pl
import pytest
from benchmark_standins import siuo_folder, vlguard_folder
from helpers import build_dag, metrics, perf, run_cmd

from safeforge.chain.replies import REASONS
from safeforge.validate import validate

# the module's fixture builds the whole DAG from an empty row cache (augment's OCR, evaluate's
# SmolLM2 replies): about 10 minutes while the other xdist worker builds its own
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory) -> tuple[Path, str]:
    repo, output = build_dag(tmp_path_factory.mktemp("dag"))
    BUILT_DEDUP.update(metrics(repo, "dedup"))  # before tests change it
    return repo, output


BUILT_DEDUP: dict = {}


def test_a_dedup_threshold_reruns_dedup_and_after_only(built_repo):
    repo, _ = built_repo
    # the baseline is the default build, read when it was made: an earlier test's experiment
    # leaves its outputs in the workspace, while each `exp run -S` starts from the committed params
    before = BUILT_DEDUP
    # 20 of 64 bits with verification off: a few different bundled photos now pass for near
    # duplicates (verified, they do not: the default keeps them apart at any distance)
    loose = ["dedup.phash_max_distance=20", "dedup.min_match_score=-1"]
    loose += ["dedup.keypoints_below_score=null"]
    out = run_cmd(["dvc", "exp", "run", *(a for s in loose for a in ("-S", s))], repo)
    text = out.stdout + out.stderr
    for upstream in ("ingest", "describe", "generate", "embed"):
        assert f"Running stage '{upstream}'" not in text
    assert "Running stage 'dedup'" in text and "Running stage 'quality'" in text
    after = metrics(repo, "dedup")
    assert after["rows_in"] == before["rows_in"]  # same upstream rows, only the threshold moved
    assert after["rows_out"] < before["rows_out"]
    phash_drops = [m["dropped_by_method"].get("image_phash", 0) for m in (before, after)]
    assert phash_drops[1] > phash_drops[0]


def test_augment_off_is_one_param_and_trains_the_judge_without_a_reader(built_repo):
    """The A/B of the README: `-S augment.enabled=false` reruns augment and what it feeds,
    nothing upstream; no variants, no reader head, and own_test scored by the typed head."""
    repo, _ = built_repo
    out = run_cmd(["dvc", "exp", "run", "-S", "augment.enabled=false"], repo)
    text = out.stdout + out.stderr
    for upstream in ("describe", "generate", "embed", "dedup", "split"):
        assert f"Running stage '{upstream}'" not in text
    assert "Running stage 'augment'" in text and "Running stage 'train_judge'" in text
    assert metrics(repo, "augment")["variants"] == 0
    assert metrics(repo, "train_judge")["train_variant_rows"] == 0
    assert not (repo / "data/train_judge/judge/reader").exists()
    predictions = pl.read_parquet(repo / "data/score/own_test/predictions.parquet")
    assert not predictions["rationale"].str.contains("text in image").any()


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


def test_a_listed_benchmark_without_a_root_is_skipped_and_the_report_says_so(built_repo):
    """score.benchmarks lists every benchmark by default; this machine has none of their files,
    so each is skipped (not an error) and the report names them."""
    repo, _ = built_repo
    skipped = metrics(repo, "score/salad")
    assert skipped["skipped"] == "benchmarks.salad.root is not set"
    assert skipped["rows_in"] == skipped["rows_out"] == 0
    assert "balanced_accuracy" not in skipped
    report = (repo / "reports/report.md").read_text()
    assert "Not scored on this machine: figstep, mmsafeaware" in report
    assert metrics(repo, "report")["transfer_score"] is None


def test_a_model_rater_rates_real_replies_and_counts_the_malformed(built_repo):
    """`-S evaluate.rater=hf`: SmolLM2 rates SmolLM2's replies with the rubric. A 135M model
    seldom writes the JSON asked for: every rating it botches twice is counted by its reason,
    none is guessed. Only evaluate (and the report) rerun; the model's replies come from the
    row cache the default build filled."""
    repo, _ = built_repo
    args = ["-S", "evaluate.benchmarks=[own_test]", "-S", "evaluate.rater=hf"]
    out = run_cmd(["dvc", "exp", "run", *args, "-S", "evaluate.max_items=2"], repo)
    text = out.stdout + out.stderr
    for upstream in ("split", "augment", "train_judge", "score@own_test"):
        assert f"Running stage '{upstream}'" not in text
    assert "Running stage 'evaluate@own_test'" in text
    m = metrics(repo, "evaluate/own_test")
    assert (m["rows_in"], m["rows_out"], m["dropped"]) == (32, 2, {"beyond_max_items": 30})
    assert m["rater"] == "hf:smollm2" and m["rater_is_heuristic"] is False
    assert m["rubric"] == "v1"
    assert m["unrated"] + sum(m["by_rating"].values()) == 2
    assert sum(m["unrated_by_reason"].values()) == m["unrated"]
    assert set(m["unrated_by_reason"]) <= set(REASONS)
    responses = pl.read_parquet(repo / "data/evaluate/own_test/responses.parquet")
    assert responses.height == 2 and responses["response"].null_count() == 0
    assert (responses["rating"].is_null() == responses["unrated"].is_not_null()).all()
    assert perf(repo, "evaluate/own_test")["row_cache"]["cache_hits"] >= 2  # the replies


def test_a_model_backend_over_http_writes_the_dataset_and_prompt_edits_rerun_little(
    built_repo, monkeypatch
):
    """`-S generator=openai` against a real loopback server (scripted to answer the chain
    well, and only to the right API key), then `-S prompts=v2`, which edits only the queries
    and guidance steps. The key never lands in a file the runs write, in git or in the logs."""
    from backends.chat_server import chat_server

    repo, _ = built_repo
    before = (repo / "params.yaml").read_text()
    monkeypatch.setenv(KEY_ENV, SECRET)  # the server expects it; dvc and the stages inherit it
    outputs = []
    try:
        with chat_server("rms", expect_key_env=KEY_ENV) as url:
            server = ["-S", "generator=openai", "-S", f"generator.base_url={url}"]
            server += ["-S", f"generator.api_key_env={KEY_ENV}", "-S", "generator.model=scripted"]
            outputs.append(run_cmd(["dvc", "exp", "run", *server], repo))
            first = metrics(repo, "generate")
            assert first["rows_in"] == first["rows_out"] + first["rows_dropped"]
            assert first["records_out"] > 0 and first["malformed_outputs"] == {}
            records = pl.read_parquet(repo / "data/generate/records.parquet")
            assert set(records["generator"]) == {"scripted@main"}
            assert {"unsafe", "benign"} <= set(records["query_type"])
            assert (repo / "metrics/score/own_test.json").exists()  # the judge trained on it

            out = run_cmd(["dvc", "exp", "run", *server, "-S", "prompts=v2"], repo)
            outputs.append(out)
            assert "Running stage 'generate'" in out.stdout + out.stderr
            second = perf(repo, "generate")
            # analyse and contrast prompts are unchanged in v2: only queries and guidance ask again
            risks = first["records_by_label"]["unsafe"]
            assert second["cache_misses"] == 2 * risks
            assert second["cache_hits"] > 0
            assert second["backend_faults"] == {}  # a well-behaved server: nothing retried
    finally:
        (repo / "params.yaml").write_text(before)
    assert_secret_nowhere(repo, [o.stdout + o.stderr for o in outputs])


# made at run time: a literal would be found in this very file, which the repo copy holds
KEY_ENV, SECRET = "SAFEFORGE_TEST_API_KEY", f"sk-test-{uuid.uuid4().hex}"


def assert_secret_nowhere(repo: Path, logs: list[str]) -> None:
    """The key is in no file of the workspace (params.yaml, dvc.lock, metrics, perf, reports,
    data), in no commit DVC made for the experiments, in no log and not in the row cache."""
    secret = SECRET.encode()
    assert not [log for log in logs if SECRET in log], "the API key is in a stage's log"
    files = [p for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts]
    cache_dir = Path(os.environ["SAFEFORGE_CACHE_DIR"])
    files += [p for p in cache_dir.glob("rows.sqlite*") if p.is_file()]
    assert not [str(p) for p in files if secret in p.read_bytes()], "the API key is in a file"
    history = run_cmd(["git", "log", "--all", "-p", "--format=%H %s"], repo).stdout
    assert SECRET not in history, "the API key is in a commit (an experiment's)"
