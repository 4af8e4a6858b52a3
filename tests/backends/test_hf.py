"""The hf backend on real models: the packaged SmolLM2 (text) and a tiny random LLaVA (images)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from safeforge.backends import ChatRequest, Sampling, make_backend
from safeforge.backends.hf import HFBackend


def ask(text: str, images: tuple[str, ...] = (), max_tokens: int = 12, schema=None) -> ChatRequest:
    return ChatRequest(
        messages=({"role": "user", "content": text},),
        images=images,
        sampling=Sampling(max_tokens=max_tokens),
        json_schema=schema,
    )


@pytest.fixture(scope="module")
def smollm2(smollm2_folder: Path) -> HFBackend:
    return make_backend({"backend": "hf", "model": "smollm2", "batch_size": 4})


def test_batched_greedy_replies_equal_one_at_a_time(smollm2: HFBackend) -> None:
    # prompts of different lengths: left padding must not change what the model writes
    requests = [ask(f"Name {n} fruit{'s' * (n > 1)}.") for n in (1, 2, 3, 10, 25)]
    batched = smollm2.complete(requests)
    single = [smollm2.complete([r])[0] for r in requests]
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.ok and r.text for r in batched)
    assert {r.finish_reason for r in batched} <= {"stop", "length"}


def test_a_reply_cut_at_max_tokens_says_length(smollm2: HFBackend) -> None:
    (reply,) = smollm2.complete([ask("Write a long story about a dragon.", max_tokens=3)])
    assert reply.finish_reason == "length"


def test_a_json_request_gets_its_reply_started_as_json(smollm2: HFBackend) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    (reply,) = smollm2.complete([ask("Give n = 3.", schema=schema, max_tokens=8)])
    assert reply.text.startswith("{")


def test_an_image_for_a_text_model_fails_that_request_only(smollm2: HFBackend, tmp_path) -> None:
    picture = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(picture)
    replies = smollm2.complete([ask("Hi."), ask("What is this?", (str(picture),))])
    assert replies[0].ok
    assert not replies[1].ok and "takes no images" in replies[1].error


def test_the_packaged_model_identity_has_its_version_and_a_fingerprint(smollm2) -> None:
    identity = smollm2.identity()
    assert identity["backend"] == "hf" and identity["model"] == "smollm2"
    assert identity["revision"].startswith("0.1.2+")


def test_a_vlm_reads_images_in_a_batch(tiny_vlm_folder: Path, tmp_path) -> None:
    vlm = make_backend(
        {"backend": "hf", "model": str(tiny_vlm_folder), "images": True, "batch_size": 4}
    )
    assert vlm.supports_images
    paths = []
    for i, colour in enumerate(["red", "blue", "green"]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (40, 30), colour).save(paths[-1])
    requests = [ask("Describe.", (p,), max_tokens=5) for p in paths] + [ask("No image.", (), 5)]
    replies = vlm.complete(requests)
    assert all(r.ok for r in replies), replies
    single = vlm.complete([requests[1]])[0]
    assert single.text == replies[1].text  # batching with images changes nothing


def test_a_changed_model_folder_changes_the_identity(tiny_vlm_folder: Path, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_vlm_folder, copy)
    params = {"backend": "hf", "model": str(copy), "images": True}
    before = make_backend(params).identity()["revision"]
    (copy / "extra.json").write_text("{}")
    assert make_backend(params).identity()["revision"] != before


def test_config_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        make_backend({"backend": "hf", "model": str(tmp_path)})
    with pytest.raises(KeyError, match="unknown keys \\['temprature'\\]"):
        make_backend({"backend": "hf", "model": "smollm2", "temprature": 0.1})
    with pytest.raises(ValueError, match="choose one of"):
        make_backend({"backend": "llamacpp"})


def test_a_fully_cached_rerun_never_loads_the_model(smollm2_folder: Path, tmp_path) -> None:
    from safeforge.cache import RowCache
    from safeforge.config import compose
    from safeforge.generate.chain import DESCRIBE_SCHEMA, Ask, Chat, Prompts

    prompts = Prompts.from_params(compose()["prompts"])
    asks = [Ask("a", {}), Ask("b", {})]
    replies = []
    for _ in range(2):
        backend = make_backend({"backend": "hf", "model": "smollm2"})
        chat = Chat(backend, prompts, RowCache("t", tmp_path), Sampling(max_tokens=6), 4)
        replies.append(chat.ask("describe", asks, DESCRIBE_SCHEMA))
    assert backend.model is None  # the second backend answered everything from the cache
    assert replies[0] == replies[1]
