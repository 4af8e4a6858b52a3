"""`safeforge bench list/check/score`: the commands for people who only want to score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from benchmark_standins import siuo_folder, vlguard_folder
from helpers import judge_conf, run_cmd

from safeforge.cli import main
from safeforge.judges.probe import ProbeJudge


def run_json(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, object]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_list_shows_each_benchmark_and_its_root(tmp_path, capsys) -> None:
    code, rows = run_json(
        capsys,
        ["bench", "list", "--json", "--set", f"benchmarks.siuo.root={tmp_path}",
         "--set", f"benchmarks.salad.root={tmp_path / 'gone'}"],
    )  # fmt: skip
    assert code == 0
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {
        "mmsafeaware", "salad", "siuo", "vlguard", "mssbench", "figstep", "mmsafetybench",
    }  # fmt: skip
    assert by_name["siuo"]["root_status"] == "present"
    assert by_name["salad"]["root_status"] == "missing"
    assert by_name["figstep"]["root_status"] == "not set"
    # score.benchmarks lists them all; the score stage skips those whose root is unset
    assert {r["name"] for r in rows if r["scored"]} == {"siuo", "salad"}
    code, rows = run_json(
        capsys,
        ["bench", "list", "--json", "--set", f"benchmarks.siuo.root={tmp_path}",
         "--set", "score.benchmarks=[own_test]"],
    )  # fmt: skip
    assert not any(r["scored"] for r in rows)


def test_check_reports_items_labels_and_subsets(tmp_path, capsys) -> None:
    root = vlguard_folder(tmp_path / "vlguard")
    next(root.glob("data/test/**/*.png")).unlink()  # one image gone: reported, not fatal
    code, summary = run_json(capsys, ["bench", "check", "vlguard", "--root", str(root), "--json"])
    assert code == 0
    assert summary["items"] + summary["refused"] == 13
    assert summary["refused_by_reason"] == {"missing_image": summary["refused"]}
    assert summary["refused"] in (1, 2)  # an unsafe image has one item, a safe one two
    assert set(summary["by_subset"]) == {"safe_safes", "safe_unsafes", "unsafes"}
    assert sum(summary["by_label"].values()) == summary["items"]


def test_check_fails_when_the_folder_is_not_that_benchmark(tmp_path, capsys) -> None:
    root = vlguard_folder(tmp_path / "vlguard")
    code, out = run_json(capsys, ["bench", "check", "siuo", "--root", str(root), "--json"])
    assert code == 2
    assert "siuo_gen.json" in out["error"]
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    (empty / "data" / "siuo_gen.json").write_text("[]")
    code, out = run_json(capsys, ["bench", "check", "siuo", "--root", str(empty), "--json"])
    assert code == 2 and "no items" in out["error"]
    assert main(["bench", "check", "nosuch", "--root", str(root)]) == 2
    assert "known:" in capsys.readouterr().err


def test_check_names_a_wrong_conf_key(tmp_path, capsys) -> None:
    root = siuo_folder(tmp_path / "siuo")
    argv = ["bench", "check", "siuo", "--root", str(root), "--json"]
    code, out = run_json(capsys, [*argv, "--set", "+benchmarks.siuo.lable=safe"])
    assert code == 2
    assert out["error"].startswith("benchmarks.siuo.lable: not a key of this adapter")
    code, summary = run_json(capsys, argv)
    assert code == 0 and summary["version"].startswith("sinwang20/SIUO@")


@pytest.fixture(scope="module")
def saved_probe(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    n = 24
    description = rng.normal(size=(n, 384)).astype(np.float32)
    query = rng.normal(size=(n, 384)).astype(np.float32)
    frame = pl.DataFrame(
        {
            "image_emb": rng.random((n, 1024), dtype=np.float32),
            "description_emb": description / np.linalg.norm(description, axis=1, keepdims=True),
            "query_emb": query / np.linalg.norm(query, axis=1, keepdims=True),
            "label": ["safe", "unsafe"] * (n // 2),
            "category": ["privacy"] * n,
        }
    )
    folder = tmp_path_factory.mktemp("judge")
    ProbeJudge.fit(frame[:16], frame[16:], judge_conf("probe", epochs=2)).save(folder)
    return folder


def test_score_prints_the_metrics_of_a_saved_judge(tmp_path, capsys, saved_probe) -> None:
    root = siuo_folder(tmp_path / "siuo")
    preds = tmp_path / "predictions.parquet"
    argv = ["bench", "score", "siuo", "--root", str(root), "--judge", str(saved_probe)]
    code, m = run_json(capsys, [*argv, "--json", "--no-ocr", "--predictions", str(preds)])
    assert code == 0
    assert (m["n"], m["n_unsafe"], m["judge"]) == (9, 9, "probe")
    assert m["balanced_accuracy"] == m["unsafe_recall"]  # one class: its recall
    assert len(m["by_subset"]) == 9  # SIUO's nine categories
    assert pl.read_parquet(preds).height == 9


def test_score_through_the_installed_command(tmp_path, saved_probe) -> None:
    root = vlguard_folder(tmp_path / "vlguard")
    out = run_cmd(
        ["safeforge", "bench", "score", "vlguard", "--root", str(root), "--judge",
         str(saved_probe), "--no-ocr"],
        cwd=tmp_path,  # outside the checkout: the command finds the project's conf/ itself
    )  # fmt: skip
    assert "vlguard: 13 items" in out.stdout
    assert "balanced_accuracy" in out.stdout and "subset safe_safes" in out.stdout


def test_score_a_zero_shot_judge_named_in_conf(tmp_path, capsys, tiny_vlm_folder) -> None:
    root = siuo_folder(tmp_path / "siuo")
    clue = [
        f"zero_shot.clue.backend.model={tiny_vlm_folder}",
        "zero_shot.clue.relevance.top_k=1",
        "zero_shot.clue.relevance.describe_max_tokens=4",
        "zero_shot.clue.fallback.max_tokens=4",
        "zero_shot.clue.fallback.summary_max_tokens=4",
    ]
    argv = ["bench", "score", "siuo", "--root", str(root), "--judge", "clue", "--json"]
    code, metrics = run_json(capsys, [*argv, *(a for s in clue for a in ("--set", s))])
    assert code == 0
    assert metrics["judge"] == "clue" and metrics["n"] == 9
    assert metrics["judge_stats"]["calls"] > 0


def test_score_names_what_a_judge_can_be(tmp_path, capsys) -> None:
    root = siuo_folder(tmp_path / "siuo")
    code = main(["bench", "score", "siuo", "--root", str(root), "--judge", "nope"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'nope' is neither a saved judge folder nor a zero-shot judge" in err
    assert "['clue']" in err
