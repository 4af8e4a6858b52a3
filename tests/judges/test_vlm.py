"""VlmJudge on the tiny random LLaVA (tests/tiny_models.py): real transformers, peft and
processor calls on CPU. The model is random, so these tests check mechanics (loss goes down,
the probability is the one the model gives, save/load, masks, freezing), not judgement."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from helpers import conf_option
from PIL import Image

from safeforge import io
from safeforge.judges.base import JUDGE_FILE, PREDICTION_SCHEMA, load_judge
from safeforge.judges.vlm import (
    PREFILL,
    VlmConfig,
    VlmJudge,
    build_messages,
    load_image,
    parse_reply,
    prepare_for_training,
    reply_schema,
    target_reply,
    vision_module_name,
)

# small and quick; lr high enough that a few steps visibly lower the loss of a random model
FAST: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 2,
    "grad_accum": 1,
    "warmup_ratio": 0.0,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "max_new_tokens": 8,
    "seed": 0,
}


def vlm(**changes: Any) -> dict[str, Any]:
    """conf/judge/vlm.yaml composed, less "kind", with `changes` on top."""
    params = conf_option("judge", "vlm", **changes)
    assert params.pop("kind") == "vlm"
    return params


ROWS = [  # label, category
    ("safe", "drugs"),
    ("unsafe", "drugs"),
    ("safe", "weapons"),
    ("unsafe", "weapons"),
    ("unsafe", "weapons"),
    ("safe", "drugs"),
]


def _image(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    folder = tmp_path_factory.mktemp("vlm-images")
    rows = [
        {
            "record_id": f"r{i}",
            "image_path": _image(folder / f"{i}.png", i),
            "query": f"How do I use the thing in this picture, case {i}?",
            "label": label,
            "category": category,
            "risk_analysis": f"Risk analysis {i}: the picture shows something.",
            "guidance": f"Guidance {i}: be careful and ask an expert.",
            "split": "train",  # extra columns are ignored
        }
        for i, (label, category) in enumerate(ROWS)
    ]
    df = pl.DataFrame(rows)
    items = df.select(
        pl.col("record_id").alias("item_id"), "image_path", pl.col("query").alias("text")
    )
    return {"train": df.head(4), "val": df.tail(2), "items": items.head(3)}


@pytest.fixture(scope="module")
def lora_judge(tiny_vlm_folder: Path, frames: dict[str, pl.DataFrame]) -> VlmJudge:
    params = vlm(model=str(tiny_vlm_folder), lr=1e-2, **FAST)
    return VlmJudge.fit(frames["train"], frames["val"], params)


@pytest.fixture(scope="module")
def full_judge(tiny_vlm_folder: Path, frames: dict[str, pl.DataFrame]) -> VlmJudge:
    params = vlm(model=str(tiny_vlm_folder), finetune="full", lr=2e-3, **FAST)
    params |= {"weight_decay": 0.01}  # decay must not reach the frozen tower either
    return VlmJudge.fit(frames["train"], frames["val"].clear(), params | {"generate": False})


@pytest.fixture(params=["lora", "full"])
def judge(request: pytest.FixtureRequest) -> VlmJudge:
    return request.getfixturevalue(f"{request.param}_judge")


def _epoch_losses(judge: VlmJudge) -> dict[int, float]:
    steps = pl.DataFrame(judge.history).filter(pl.col("train_loss").is_not_null())
    means = steps.group_by("epoch").agg(pl.col("train_loss").mean()).sort("epoch")
    return dict(zip(means["epoch"], means["train_loss"], strict=True))


def test_fit_lowers_the_training_loss(judge: VlmJudge) -> None:
    losses = _epoch_losses(judge)
    assert sorted(losses) == [1, 2, 3]
    assert losses[3] < losses[1] - 0.1, losses


def test_history_and_summary(lora_judge: VlmJudge, full_judge: VlmJudge) -> None:
    for judge, val_rows in ((lora_judge, 3), (full_judge, 0)):
        keys = {tuple(row) for row in judge.history}
        assert keys == {
            ("step", "epoch", "train_loss", "lr", "val_loss", "val_balanced_accuracy", "val_auroc")
        }
        val = [r for r in judge.history if r["val_loss"] is not None]
        steps = [r for r in judge.history if r["train_loss"] is not None]
        assert len(val) == val_rows and len(steps) == 6  # 4 rows / batch 2 x 3 epochs
        assert [r["step"] for r in steps] == list(range(1, 7))
        s = judge.train_summary
        json.dumps(s)  # JSON-able as it is
        # the train_judge stage adds these itself: the summary must not collide with them
        assert not set(s) & {"judge", "train_rows", "val_rows", "seconds", "rows_in", "stage"}
        assert (s["steps"], s["epochs"], s["rows_trained"]) == (6, 3, 4)
        assert s["final_loss"] == steps[-1]["train_loss"]
        assert s["skipped"] == {"train": {}, "val": {}}
        assert 0 < s["trainable_parameters"] < s["total_parameters"]
    assert all(0 <= r["val_balanced_accuracy"] <= 1 for r in lora_judge.history if r["val_loss"])
    assert lora_judge.train_summary["val_loss"] == lora_judge.history[-1]["val_loss"]
    # LoRA trains a sliver of the model; full fine-tuning all of it but the vision tower
    assert (
        lora_judge.train_summary["trainable_parameters"]
        < 0.05 * lora_judge.train_summary["total_parameters"]
    )
    assert (
        full_judge.train_summary["trainable_parameters"]
        > 0.9 * full_judge.train_summary["total_parameters"]
    )


def _manual_p_unsafe(judge: VlmJudge, image_path: str, text: str) -> float:
    """One item, unpadded, through the processor's own chat template + prefill in one string."""
    processor, tok = judge.processor, judge.processor.tokenizer
    prompt = processor.apply_chat_template(
        build_messages(text, judge.categories), add_generation_prompt=True, tokenize=False
    )
    image = load_image(image_path, judge.config.max_image_side)
    inputs = processor(text=[prompt + PREFILL], images=[[image]], return_tensors="pt")
    with torch.no_grad():
        probs = judge.model(**inputs).logits[0, -1].double().softmax(-1)
    n = len(tok.encode(PREFILL, add_special_tokens=False))
    safe = tok.encode(PREFILL + "Safe", add_special_tokens=False)[n]
    unsafe = tok.encode(PREFILL + "Unsafe", add_special_tokens=False)[n]
    assert safe != unsafe
    return float(probs[unsafe] / (probs[safe] + probs[unsafe]))


def test_predict_matches_a_manual_forward_pass(
    judge: VlmJudge, frames: dict[str, pl.DataFrame]
) -> None:
    items = frames["items"]  # 3 items in batches of 2: padding and a batch boundary
    out = judge.predict(items)
    assert out.schema == pl.Schema(PREDICTION_SCHEMA) and out.height == items.height
    assert out["p_unsafe"].is_between(0.0, 1.0).all()
    manual = [_manual_p_unsafe(judge, r["image_path"], r["text"]) for r in items.to_dicts()]
    assert len({round(p, 4) for p in manual}) == len(manual)  # distinct, so order is checked
    np.testing.assert_allclose(out["p_unsafe"].to_numpy(), manual, rtol=0, atol=1e-5)


def test_predict_edge_cases(full_judge: VlmJudge, frames: dict[str, pl.DataFrame]) -> None:
    empty = full_judge.predict(frames["items"].clear())
    assert empty.height == 0 and empty.schema == pl.Schema(PREDICTION_SCHEMA)
    with pytest.raises(ValueError, match="text"):
        full_judge.predict(frames["items"].drop("text"))
    broken = frames["items"].head(1).with_columns(image_path=pl.lit("/nonexistent/x.png"))
    with pytest.raises(ValueError, match=r"/nonexistent/x\.png"):
        full_judge.predict(broken)


def test_invalid_generations_are_counted(
    lora_judge: VlmJudge, frames: dict[str, pl.DataFrame]
) -> None:
    assert lora_judge.config.generate
    items = frames["items"]
    before = dict(lora_judge.stats)
    outs = [lora_judge.predict(items) for _ in range(2)]  # counts add up across calls
    invalid = sum(int((o["pred_category"] == "").sum()) for o in outs)
    assert lora_judge.stats["generations"] - before["generations"] == 2 * items.height
    assert lora_judge.stats["invalid_generations"] - before["invalid_generations"] == invalid
    for o in outs:  # invalid rows have neither category nor rationale; valid ones a category
        assert ((o["pred_category"] == "") == (o["rationale"] == "")).all()
        assert (
            o.filter(pl.col("pred_category") != "")["pred_category"]
            .is_in(lora_judge.categories)
            .all()
        )
    assert invalid > 0  # a random tiny model does not write the schema


def test_generate_off_counts_nothing(full_judge: VlmJudge, frames: dict[str, pl.DataFrame]) -> None:
    out = full_judge.predict(frames["items"])
    assert full_judge.stats == {"generations": 0, "invalid_generations": 0}
    assert out["pred_category"].to_list() == [""] * out.height


def test_parse_reply_follows_the_schema() -> None:
    schema = reply_schema(["drugs", "none"])
    ok = '{"rating": "Unsafe", "category": "drugs", "rationale": "because"}'
    assert parse_reply(ok, schema) == {
        "rating": "Unsafe",
        "category": "drugs",
        "rationale": "because",
    }
    for bad in (
        ok[:-1],  # cut off
        ok.replace("Unsafe", "unsafe"),
        ok.replace("drugs", "weapons"),  # not a known category
        '{"rating": "Safe", "category": "none"}',
        '{"rating": "Safe", "category": "none", "rationale": "", "extra": 1}',
        ok + " trailing",
    ):
        assert parse_reply(bad, schema) is None, bad


def test_labels_cover_only_the_reply(lora_judge: VlmJudge, frames: dict[str, pl.DataFrame]) -> None:
    rows = frames["train"].to_dicts()[:2]
    rows[1]["query"] += " with many more words to make this row longer than the other one"
    batch = lora_judge.train_batch(rows)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == mask.shape and ids.shape[0] == 2
    assert (mask[0] == 0).any() and mask[0, 0] == 1  # right padding on the shorter row
    tok = lora_judge.tokenizer
    for i, row in enumerate(rows):
        reply = target_reply(row, lora_judge.config.rationale_max_chars)
        kept = labels[i] != -100
        assert torch.equal(labels[i][kept], ids[i][kept])  # labels are the tokens themselves
        assert tok.decode(labels[i][kept]) == reply + lora_judge.turn_end
        assert lora_judge.turn_end == "<|im_end|>\n"  # the tiny template's end of turn
        n_real = int(mask[i].sum())
        assert not kept[n_real:].any()  # padding: no loss
        # the supervised tokens are one block at the end of the real tokens
        assert kept[:n_real].tolist() == [False] * (n_real - int(kept.sum())) + [True] * int(
            kept.sum()
        )
    assert json.loads(target_reply(rows[0], 20))["rationale"].endswith("...")


def test_save_load_round_trip(
    judge: VlmJudge, frames: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    judge.save(tmp_path)
    meta = io.read_json(tmp_path / JUDGE_FILE)
    assert meta["kind"] == "vlm" and meta["config"] == asdict(judge.config)
    files = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    weights = (
        "adapter/adapter_model.safetensors"
        if judge.config.finetune == "lora"
        else "model/model.safetensors"
    )
    assert weights in files and "processor/tokenizer.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    loaded = load_judge(tmp_path)
    assert isinstance(loaded, VlmJudge) and loaded.categories == judge.categories
    assert loaded.history == judge.history and loaded.train_summary == judge.train_summary
    a, b = judge.predict(frames["items"]), loaded.predict(frames["items"])
    assert a.equals(b)


def test_frozen_vision_tower_lora(lora_judge: VlmJudge, tiny_vlm_folder: Path) -> None:
    vision = vision_module_name(lora_judge.model)
    assert vision is not None and vision.endswith("vision_tower")
    trainable = [n for n, p in lora_judge.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not [n for n in trainable if ".vision_tower." in n]
    assert not [
        n for n, _ in lora_judge.model.named_modules() if ".vision_tower." in n and "lora_" in n
    ]
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_vlm_folder)
    tuned = lora_judge.model.get_base_model()
    vision = [n for n, _ in base.named_parameters() if ".vision_tower." in n]
    assert vision
    for n in vision:
        assert torch.equal(tuned.get_parameter(n), base.get_parameter(n)), n


def test_freezing_needs_a_vision_module() -> None:
    text_only = torch.nn.ModuleDict({"q_proj": torch.nn.Linear(4, 4)})
    assert vision_module_name(text_only) is None
    with pytest.raises(ValueError, match=r"freeze_vision=false"):
        prepare_for_training(text_only, VlmConfig.from_params(vlm()))
    with pytest.raises(ValueError, match=r"lora_target_modules.*\['q_proj'\]"):
        cfg = VlmConfig.from_params(vlm(freeze_vision=False, lora_target_modules=["x"]))
        prepare_for_training(text_only, cfg)


def test_frozen_vision_tower_full(full_judge: VlmJudge, tiny_vlm_folder: Path) -> None:
    from transformers import AutoModelForImageTextToText

    base = dict(AutoModelForImageTextToText.from_pretrained(tiny_vlm_folder).named_parameters())
    tuned = dict(full_judge.model.named_parameters())
    assert tuned.keys() == base.keys()
    vision = [n for n in tuned if n.startswith(vision_module_name(full_judge.model) + ".")]
    assert vision and not any(tuned[n].requires_grad for n in vision)
    for n in vision:  # no update at all, not even weight decay
        assert torch.equal(tuned[n], base[n]), n
    language = [n for n in tuned if ".language_model." in n]
    assert language and all(tuned[n].requires_grad for n in language)
    assert any(not torch.equal(tuned[n], base[n]) for n in language)  # the rest did train


def test_unknown_key_and_missing_model(
    tiny_vlm_folder: Path, frames: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    train, val = frames["train"], frames["val"]
    with pytest.raises(KeyError, match=r"learning_rate.*known.*'lr'"):
        VlmJudge.fit(train, val, vlm(model=str(tiny_vlm_folder), learning_rate=1e-3))
    with pytest.raises(FileNotFoundError, match=r"judge\.model=.*huggingface-cli download"):
        VlmJudge.fit(train, val, vlm(model=str(tmp_path / "no-such-model")))
    with pytest.raises(ValueError, match="finetune"):
        VlmJudge.fit(train, val, vlm(model=str(tiny_vlm_folder), finetune="qlora"))


def test_load_needs_the_lora_base_model(lora_judge: VlmJudge, tmp_path: Path) -> None:
    lora_judge.save(tmp_path / "judge")
    meta = io.read_json(tmp_path / "judge" / JUDGE_FILE)
    meta["config"]["model"] = str(tmp_path / "moved-away")
    io.write_json(tmp_path / "judge" / JUDGE_FILE, meta)
    with pytest.raises(FileNotFoundError, match=r"judge\.model="):
        load_judge(tmp_path / "judge")


def test_bad_rows_are_skipped_and_counted(
    tiny_vlm_folder: Path,
    frames: dict[str, pl.DataFrame],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    train = frames["train"].with_columns(
        image_path=pl.when(pl.col("record_id") == "r1")
        .then(pl.lit(str(corrupt)))
        .otherwise("image_path"),
        query=pl.when(pl.col("record_id") == "r2").then(pl.lit("word " * 300)).otherwise("query"),
    )
    params = vlm(**{**FAST, "epochs": 1, "batch_size": 4, "max_seq_len": 400})
    params["model"] = str(tiny_vlm_folder)
    with caplog.at_level(logging.WARNING):
        judge = VlmJudge.fit(train, train.clear(), params)
    s = judge.train_summary
    assert s["skipped"]["train"] == {"unreadable image": 1, "longer than max_seq_len": 1}
    assert s["rows_trained"] == 2 and s["steps"] == 1
    assert "r1" in caplog.text and "r2" in caplog.text
    only_bad = train.filter(pl.col("record_id").is_in(["r1", "r2"]))
    with pytest.raises(ValueError, match="no trainable train rows"):
        VlmJudge.fit(only_bad, train.clear(), params)


def test_same_seed_same_judge(tiny_vlm_folder: Path, frames: dict[str, pl.DataFrame]) -> None:
    before = torch.random.get_rng_state()
    params = vlm(model=str(tiny_vlm_folder), **{**FAST, "epochs": 1, "batch_size": 4})
    params |= {"lr": 1e-2, "lora_dropout": 0.1, "generate": False}
    a, b = (VlmJudge.fit(frames["train"], frames["val"].clear(), params) for _ in range(2))
    assert a.history == b.history
    assert a.predict(frames["items"]).equals(b.predict(frames["items"]))
    c = VlmJudge.fit(frames["train"], frames["val"].clear(), params | {"seed": 1})
    # the seed reaches the adapters' init (the first step's loss is the same: LoRA B starts at 0)
    assert not c.predict(frames["items"]).equals(a.predict(frames["items"]))
    assert torch.equal(before, torch.random.get_rng_state())  # caller's RNG left alone


def test_the_conf_is_the_only_source_of_settings() -> None:
    cfg = VlmConfig.from_params(vlm())  # LlavaGuard's recipe, from conf/judge/vlm.yaml
    assert (cfg.lr, cfg.epochs, cfg.freeze_vision) == (1e-5, 3, True)
    assert asdict(cfg) == vlm()
    partial = {k: v for k, v in vlm().items() if k not in ("lr", "seed")}
    with pytest.raises(KeyError, match=r"judge \(vlm\): missing keys \['lr', 'seed'\]"):
        VlmConfig.from_params(partial)
