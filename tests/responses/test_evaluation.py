"""evaluate_responses end to end over real HTTP: the model under test and a model rater are the
openai backend against the scripted chat server (mode rater: markers in an item's text script
the reply, its rating and the awareness answer), on SaLAD's and MMSafeAware's sample records
read by their adapters. Malformed ratings are counted by reason, never guessed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from backends.chat_server import chat_server
from benchmark_standins import (
    benchmark_spec,
    sample_records,
    stand_in_image,
    taxonomy,
    without_source,
    write_json,
    write_mmsafeaware_prompts,
)
from helpers import PARAMS, conf_option

from safeforge.benchmarks.base import load_benchmark, split_as_benchmark
from safeforge.cache import RowCache
from safeforge.cli import main as cli
from safeforge.responses.evaluation import evaluate_responses


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with chat_server(mode="rater") as url:
        yield url


def openai_model(url: str) -> dict[str, Any]:
    test = {"model": "scripted", "base_url": url, "api_key_env": None, "timeout_s": 10}
    return conf_option("generator", "openai", **test, backoff_s=0.01)


def params(model: str = "under_test", rater: str = "rater") -> dict[str, Any]:
    return {**PARAMS["evaluate"], "model": model, "rater": rater}


def salad_root(root: Path, marks: list[str]) -> Path:
    """SaLAD's sample records with a scripting marker appended to each query."""
    records = [without_source(r) for r in sample_records("salad")]
    for r, mark in zip(records, marks, strict=False):
        r["query"] += f" {mark}"
    write_json(root / "data/data.json", records)
    for i, r in enumerate(records):
        stand_in_image(root / "images" / r["image"], i)
    return root


def test_salad_replies_rated_by_a_model_with_malformed_ratings_counted(
    server: str, tmp_path: Path
) -> None:
    spec = benchmark_spec("salad")
    labels = [r["safety type"] for r in sample_records("salad")]
    # per unsafe item in file order: a warning of the same risk, a warning of another, a refusal,
    # unsafe compliance, prose instead of JSON, and a rating a safe item has (schema mismatch)
    script = iter(
        ["warning]] [[same", "warning", "refusal", "unsafe_compliance", "garbage", "helpful"]
    )
    safe_script = iter(["over_refusal", "helpful", "garbage"])
    marks = []
    for label in labels:
        rating = (
            next(script, "warning" if label == "unsafe" else None)
            if label == "unsafe"
            else next(safe_script, "helpful")
        )
        marks.append(f"[[rate:{rating}]]")
    root = salad_root(tmp_path / "salad", marks)
    table = load_benchmark("salad", spec, root=root, taxonomy=taxonomy())
    models = {"under_test": openai_model(server), "rater": openai_model(server)}
    cache = RowCache("evaluate", tmp_path / "cache")
    out, m = evaluate_responses(table, table.items, spec, params(), models, cache)

    assert out.height == 20 and out["response"].str.starts_with("ANSWER to: ").all()
    assert m["model_sees_images"] is True and m["rater_is_heuristic"] is False
    assert m["rater"] == "openai:scripted" and m["rubric"] == "v1"
    assert (m["unsafe_items"], m["safe_items"]) == (10, 10)
    # 3 malformed ratings (2 unsafe, 1 safe): retried once, then counted under their reason
    assert m["unrated"] == 3 and sum(m["unrated_by_reason"].values()) == 3
    assert set(m["unrated_by_reason"]) <= {"invalid_json", "schema_mismatch"}
    by_rating = m["by_rating"]
    assert by_rating["refusal"] == 1 and by_rating["unsafe_compliance"] == 1
    assert by_rating["warning"] == 10 - 2 - 2 and by_rating["over_refusal"] == 1
    assert m["safe_response_rate"] == round(6 / 8, 4)
    assert m["over_refusal_rate"] == round(1 / 9, 4)
    # SaLAD's safety warning is the reference: only the first warning named the same risk
    assert m["same_risk_rate"] == round(1 / 8, 4)
    unsafe = out.filter(pl.col("label") == "unsafe")
    assert (unsafe["reference"] != "").all()
    assert "awareness" not in m  # SaLAD is not in evaluate.awareness.benchmarks

    # the same run again asks the server nothing new: every call comes from the row cache
    before = cache.stats()["cache_misses"]
    evaluate_responses(table, table.items, spec, params(), models, cache)
    assert cache.stats()["cache_misses"] == before


def test_mmsafeaware_awareness_fills_the_papers_table(server: str, tmp_path: Path) -> None:
    records = sample_records("mmsafeaware")
    # the model says "yes, safe" to every safe item and to the first two unsafe ones. Labels as
    # the authors' scoring script gives them (ids 128-1153 unsafe), which the adapter follows
    answers, unsafe_seen = {}, 0
    for r in records:
        if not 128 <= r["id"] <= 1153:
            answers[r["id"]] = "yes"
        else:
            answers[r["id"]] = "yes" if unsafe_seen < 2 else ("none" if unsafe_seen == 2 else "no")
            unsafe_seen += 1
    root = tmp_path / "mmsafeaware"
    blocks = [
        (
            r["id"],
            r["prompt"].replace(
                f'"{r["sentence"]}"', f'"{r["sentence"]} [[aware:{answers[r["id"]]}]]"'
            ),
        )
        for r in records
    ]
    write_mmsafeaware_prompts(root, blocks)
    for seed, r in enumerate(records):
        stand_in_image(root / r["image"], seed)
    spec = benchmark_spec("mmsafeaware")
    table = load_benchmark("mmsafeaware", spec, root=root, taxonomy=taxonomy())
    models = {
        "under_test": openai_model(server),
        "heuristic": PARAMS["evaluate"]["models"]["heuristic"],
    }
    cache = RowCache("evaluate", tmp_path / "cache")
    out, m = evaluate_responses(table, table.items, spec, params(rater="heuristic"), models, cache)

    a = m["awareness"]
    n_unsafe = sum(128 <= r["id"] <= 1153 for r in records)
    assert a["items"] == 15 and a["no_verdict"] == 1
    assert a["unsafe_judged_safe"] == round(2 / n_unsafe, 4)
    assert a["safe_judged_unsafe"] == 0.0
    assert a["accuracy"] == round((15 - 3) / 15, 4)
    official = a["official"]
    assert official["Over-Safe"] == 1.0 and official["counts"]["Total"] == 15
    assert official["Total"] == a["accuracy"]
    # the question is asked in the authors' words, around the item's sentence
    question = out["awareness_reply"]
    assert question.null_count() == 0
    assert m["rater_is_heuristic"] is True and m["rater"] == "heuristic"


def test_eval_command_prints_the_rates_on_salad(server: str, tmp_path: Path, capsys) -> None:
    root = salad_root(tmp_path / "salad", [])
    overrides = [
        f"evaluate.models.openai.base_url={server}",
        "evaluate.models.openai.api_key_env=null",
    ]
    args = ["eval", "salad", "--root", str(root), "--model", "openai", "--max-items", "6"]
    args += [f"--set={o}" for o in overrides]
    assert cli([*args, "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["items"] == 6 and m["rater"] == "heuristic"
    assert cli(args) == 0
    text = capsys.readouterr().out
    assert "safe-response rate (warning)" in text and "over-refusal rate" in text
    assert cli(["eval", "salad", "--root", str(tmp_path / "nowhere")]) == 2


def test_own_test_items_carry_the_guidance_as_reference() -> None:
    dataset = pl.DataFrame(
        {
            "record_id": ["a", "b", "c"],
            "label": ["unsafe", "safe", "unsafe"],
            "query_type": ["unsafe", "benign", "unsafe"],
            "category": ["x", "x", "y"],
            "query": ["q1", "q2", "q3"],
            "image_path": ["i1", "i2", "i3"],
            "guidance": ["g1", "g2", "g3"],
            "split": ["test", "test", "train"],
        }
    )
    items = split_as_benchmark(dataset, "test", "1", reference=True).items
    assert items["item_id"].to_list() == ["a", "b"]
    assert items["reference"].to_list() == ["g1", "g2"]
    assert items["subset"].to_list() == ["unsafe", "benign"]
