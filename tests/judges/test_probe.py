"""ProbeJudge on a synthetic set where safety depends on the image-query pair, not the query."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers import judge_conf

from safeforge.judges.base import JUDGE_FILE, load_judge
from safeforge.judges.metrics import binary_metrics
from safeforge.judges.probe import WEIGHTS_FILE, ProbeConfig, ProbeJudge

CATEGORIES = ["drugs", "self_harm", "weapons"]
FAST = ProbeConfig.from_params(judge_conf("probe", epochs=12, patience=4))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_frame(n: int, seed: int) -> pl.DataFrame:
    """12 fixed queries; each appears with both labels. Unsafe rows have a description close
    to their query (cosine ~0.7), safe rows a loosely related one (cosine ~0.3), so a model
    that looks at the query alone is at chance."""
    queries = _unit(np.random.default_rng(123).normal(size=(12, 384)))
    rng = np.random.default_rng(seed)
    qi = rng.integers(0, len(queries), n)
    unsafe = rng.random(n) < 0.5
    q = queries[qi]
    noise = _unit(rng.normal(size=(n, 384)))
    desc = _unit(np.where(unsafe[:, None], 1.0, 0.3) * q + noise)
    image = (rng.random((n, 1024)) * 2 + 1).astype(np.float32)  # raw, positive offset
    return pl.DataFrame(
        {
            "image_emb": pl.Series(list(image)),
            "description_emb": pl.Series(list(desc)),
            "query_emb": pl.Series(list(q)),
            "label": ["unsafe" if u else "safe" for u in unsafe],
            "category": [CATEGORIES[i % 3] for i in qi],
            "query_id": qi,
        }
    )


@pytest.fixture(scope="module")
def data() -> dict[str, pl.DataFrame]:
    return {"train": make_frame(480, 1), "val": make_frame(120, 2), "test": make_frame(240, 3)}


@pytest.fixture(scope="module")
def judge(data: dict[str, pl.DataFrame]) -> ProbeJudge:
    return ProbeJudge.fit(data["train"], data["val"], judge_conf("probe"))


def test_setup_needs_the_pair(data: dict[str, pl.DataFrame]) -> None:
    both = data["train"].group_by("query_id").agg(pl.col("label").n_unique().alias("k"))
    assert both["k"].min() == 2  # every query has safe and unsafe rows


def test_fit_learns_pair_signal(judge: ProbeJudge, data: dict[str, pl.DataFrame]) -> None:
    test = data["test"]
    out = judge.predict(test)
    assert out.columns == ["p_unsafe", "pred_category", "rationale"]
    assert out.height == test.height
    assert out["p_unsafe"].is_between(0.0, 1.0).all()
    m = binary_metrics(test["label"].to_list(), out["p_unsafe"].to_numpy(), threshold=0.5)
    assert m["balanced_accuracy"] > 0.9
    assert (out["pred_category"] == test["category"]).mean() > 0.9
    assert out["rationale"][0].startswith("probe: p_unsafe=")
    assert judge.best_epoch is not None and judge.history
    assert set(judge.history[0]) == {
        "step",
        "epoch",
        "train_loss",
        "val_loss",
        "val_balanced_accuracy",
    }


def test_save_load_round_trip(
    judge: ProbeJudge, data: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    judge.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [JUDGE_FILE, WEIGHTS_FILE]  # no temp left
    for loaded in (ProbeJudge.load(tmp_path), load_judge(tmp_path)):
        assert isinstance(loaded, ProbeJudge)
        assert loaded.categories == judge.categories and loaded.history == judge.history
        assert loaded.predict(data["test"]).equals(judge.predict(data["test"]))


def test_same_seed_same_predictions(data: dict[str, pl.DataFrame]) -> None:
    before = torch.random.get_rng_state()
    a = ProbeJudge.fit(data["train"], data["val"], FAST)
    b = ProbeJudge.fit(data["train"], data["val"], FAST)
    assert a.predict(data["test"]).equals(b.predict(data["test"]))
    assert torch.equal(before, torch.random.get_rng_state())  # caller's RNG left alone


def test_list_columns_work_like_array_columns(
    judge: ProbeJudge, data: dict[str, pl.DataFrame]
) -> None:
    test = data["test"].head(20)
    as_lists = test.with_columns(pl.col("image_emb").cast(pl.List(pl.Float32)))
    assert judge.predict(as_lists).equals(judge.predict(test))


def test_empty_val_selects_on_train_loss(
    data: dict[str, pl.DataFrame], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        j = ProbeJudge.fit(data["train"], data["train"].clear(), judge_conf("probe", epochs=3))
    assert "train loss" in caplog.text
    assert j.selected_on == "train_loss" and j.history[0]["val_loss"] is None


def test_bad_inputs_name_the_column(judge: ProbeJudge, data: dict[str, pl.DataFrame]) -> None:
    train = data["train"].head(40)
    with pytest.raises(ValueError, match="query_emb"):
        ProbeJudge.fit(train.drop("query_emb"), train, FAST)
    with pytest.raises(ValueError, match="label"):
        ProbeJudge.fit(train.drop("label"), train, FAST)
    short = train.with_columns(pl.col("description_emb").arr.head(383))
    with pytest.raises(ValueError, match="description_emb"):
        ProbeJudge.fit(short, train, FAST)
    wrong_image = train.with_columns(pl.col("image_emb").arr.head(1000))
    with pytest.raises(ValueError, match="image_emb"):
        ProbeJudge.fit(train, wrong_image, FAST)  # val must match train's dims
    with pytest.raises(ValueError, match="image_emb"):
        judge.predict(wrong_image)
    with pytest.raises(ValueError, match="query_emb"):
        judge.predict(train.clear().drop("query_emb"))


def test_predict_empty_frame(judge: ProbeJudge, data: dict[str, pl.DataFrame]) -> None:
    out = judge.predict(data["test"].clear())
    assert out.height == 0
    assert out.schema == pl.Schema(
        {"p_unsafe": pl.Float64, "pred_category": pl.String, "rationale": pl.String}
    )


def test_load_judge_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=JUDGE_FILE):
        load_judge(tmp_path)
    (tmp_path / JUDGE_FILE).write_text('{"kind": "oracle"}')
    with pytest.raises(ValueError, match=r"unknown judge kind 'oracle'.*probe"):
        load_judge(tmp_path)


def test_weights_do_not_depend_on_the_thread_count(data: dict[str, pl.DataFrame]) -> None:
    """Training runs on TRAIN_THREADS whatever the caller set, so the saved weights are the
    same bits on a 2-core and a 16-core machine (dvc.lock tracks their md5). 70 rows, as in
    the sample DAG: without the fix, 1 and 2 threads give weights that differ in the last bits."""
    train = make_frame(70, 1)
    before = torch.get_num_threads()
    states = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fitted = ProbeJudge.fit(train, data["val"], FAST)
            states.append(fitted.model.state_dict())
            assert torch.get_num_threads() == threads  # restored after training
    finally:
        torch.set_num_threads(before)
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


# ---- the reader head: trained when the rows include augment variants -------------------------
def make_variants(n: int, seed: int, instructions: np.ndarray) -> pl.DataFrame:
    """Typeset-card rows: a neutral instruction as the query, the request in the description
    (the harm direction for unsafe ones), card-like image features. Labels follow the text in
    the image, never the query."""
    harm = _unit(np.random.default_rng(7).normal(size=(1, 384)))[0]
    rng = np.random.default_rng(seed)
    unsafe = rng.random(n) < 0.5
    desc = _unit(
        np.where(unsafe[:, None], 1.0, -1.0) * harm + 0.8 * _unit(rng.normal(size=(n, 384)))
    )
    image = (rng.random((n, 1024)) * 0.2 + 5).astype(np.float32)
    return pl.DataFrame(
        {
            "image_emb": pl.Series(list(image)),
            "description_emb": pl.Series(list(desc)),
            "query_emb": pl.Series(list(instructions[rng.integers(0, len(instructions), n)])),
            "label": ["unsafe" if u else "safe" for u in unsafe],
            "category": [CATEGORIES[i % 3] for i in range(n)],
            "variant_kind": ["typographic"] * n,
        }
    )


def test_variant_rows_train_a_reader_that_flags_harmful_image_text_and_keeps_the_originals(
    data: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    instructions = _unit(np.random.default_rng(11).normal(size=(4, 384)))
    train = pl.concat([data["train"], make_variants(240, 4, instructions)], how="diagonal_relaxed")
    plain = ProbeJudge.fit(data["train"], data["val"], FAST)
    reading = ProbeJudge.fit(train, data["val"], FAST)
    assert plain.reader is None and reading.reader is not None
    assert not reading.reader.reads_query and reading.reads_query

    unseen = _unit(np.random.default_rng(12).normal(size=(2, 384)))  # new instructions
    cards = make_variants(200, 5, unseen).drop("variant_kind")
    labels = cards["label"].to_list()
    without = binary_metrics(labels, plain.predict(cards)["p_unsafe"].to_numpy(), 0.5)
    with_reader = binary_metrics(labels, reading.predict(cards)["p_unsafe"].to_numpy(), 0.5)
    assert with_reader["balanced_accuracy"] >= 0.9 > without["balanced_accuracy"] + 0.2

    # the originals keep their typed-head scores: the max only adds the reader's evidence
    test = data["test"]
    typed = reading._scores(test)[0]
    both = reading.predict(test)["p_unsafe"].to_numpy()
    assert np.all(both >= typed - 1e-12)
    kept = binary_metrics(test["label"].to_list(), both, 0.5)["balanced_accuracy"]
    before = binary_metrics(
        test["label"].to_list(), plain.predict(test)["p_unsafe"].to_numpy(), 0.5
    )
    assert kept >= before["balanced_accuracy"] - 0.05

    # blind to the typed text: another instruction beside the same card reads the same
    swapped = cards.with_columns(query_emb=pl.Series(list(np.roll(unseen, 1, axis=0)[[0] * 200])))
    np.testing.assert_allclose(reading.reader._scores(cards)[0], reading.reader._scores(swapped)[0])

    reading.save(tmp_path / "judge")
    loaded = load_judge(tmp_path / "judge")
    assert loaded.reader is not None and not loaded.reader.reads_query
    assert loaded.predict(cards)["p_unsafe"].equals(reading.predict(cards)["p_unsafe"])
    assert "text in image" in loaded.predict(cards)["rationale"][0]
