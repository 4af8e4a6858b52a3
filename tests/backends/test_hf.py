"""The hf backend on real models: the packaged SmolLM2 (text) and a tiny random LLaVA (images)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import conf_option, sampling
from PIL import Image

from safeforge.backends import ChatRequest, make_backend
from safeforge.backends.hf import HFBackend


def hf(**changes) -> dict:
    """conf/generator/hf.yaml composed, with `changes` on top."""
    return conf_option("generator", "hf", **changes)


def ask(
    text: str, images: tuple[str, ...] = (), max_tokens: int = 12, schema=None, choices=()
) -> ChatRequest:
    return ChatRequest(
        messages=({"role": "user", "content": text},),
        images=images,
        sampling=sampling(max_tokens=max_tokens),
        json_schema=schema,
        choices=choices,
    )


def manual_first_token_probs(backend: HFBackend, text: str, image: str | None = None):
    """The next-token distribution worked out by hand: the chat template, one unpadded prompt,
    one plain forward call, softmax of the last position."""
    import torch

    if image is None:
        prompt = backend.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        inputs = backend.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    else:
        content = [{"type": "image"}, {"type": "text", "text": text}]
        prompt = backend.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        inputs = backend.processor(text=[prompt], images=[[Image.open(image)]], return_tensors="pt")
    with torch.inference_mode():
        logits = backend.model(**inputs).logits[0, -1].float()
    return torch.softmax(logits, dim=-1)


def first_token(backend: HFBackend, choice: str) -> int:
    return backend.tokenizer.encode(choice, add_special_tokens=False)[0]


@pytest.fixture(scope="module")
def smollm2(smollm2_folder: Path) -> HFBackend:
    return make_backend(hf(model="smollm2", batch_size=4))


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


def test_choice_probs_are_the_models_first_token_probabilities(smollm2: HFBackend) -> None:
    text = "Is fire hot? Answer Yes or No."
    (reply,) = smollm2.complete([ask(text, choices=("Yes", "No"))])
    assert reply.ok, reply.error
    expected = manual_first_token_probs(smollm2, text)
    probs = reply.choice_probs
    assert list(probs) == ["Yes", "No"]
    for choice in ("Yes", "No"):
        assert probs[choice] == pytest.approx(
            expected[first_token(smollm2, choice)].item(), abs=1e-5
        )
    assert reply.text == max(probs, key=probs.get)
    # over the whole vocabulary, not renormalised over the two choices
    assert 0.01 < probs["Yes"] + probs["No"] < 0.99


def test_mixed_batches_give_the_numbers_of_one_at_a_time(smollm2: HFBackend) -> None:
    requests = [
        ask("Is the sky green? Answer Yes or No.", choices=("Yes", "No")),
        ask("Write a haiku about the sea.", max_tokens=6),
        ask(
            "Is it safe to leave a candle burning next to the curtains while everybody in the "
            "house is asleep? Answer Yes or No.",
            choices=("Yes", "No"),
        ),
        ask("Pick A or B.", choices=("A", "B", "Neither")),
    ]
    batched = smollm2.complete(requests)
    single = [smollm2.complete([r])[0] for r in requests]
    assert batched[1].choice_probs is None and batched[1].text == single[1].text
    for i in (0, 2, 3):
        assert batched[i].ok, batched[i].error
        assert list(batched[i].choice_probs) == list(requests[i].choices)
        assert batched[i].choice_probs == pytest.approx(single[i].choice_probs, abs=1e-5)
        assert batched[i].text == single[i].text
    # the prompts differ, so do the numbers: each row read its own last position
    assert abs(batched[0].choice_probs["Yes"] - batched[2].choice_probs["Yes"]) > 1e-3


def test_choices_sharing_a_first_token_fail_the_call(smollm2: HFBackend) -> None:
    # a caller's mistake, the same for every row: raised, not 10,000 failed replies
    with pytest.raises(ValueError, match="'Yes, definitely' and 'Yes' share their first token"):
        smollm2.complete([ask("Hi."), ask("Sure?", choices=("Yes, definitely", "No", "Yes"))])


def test_a_vlm_gives_choice_probs_for_an_image(tiny_vlm_folder: Path, tmp_path) -> None:
    vlm = make_backend(hf(model=str(tiny_vlm_folder), images=True, batch_size=4))
    paths = []
    for i, colour in enumerate(["red", "blue", "white"]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (40, 30), colour).save(paths[-1])
    question = "Is this image unsafe? Answer Yes or No."
    requests = [ask(question, (p,), choices=("Yes", "No")) for p in paths]
    requests.append(ask("No image here. Yes or No?", choices=("Yes", "No")))
    replies = vlm.complete(requests)
    assert all(r.ok for r in replies), replies
    expected = manual_first_token_probs(vlm, question, paths[1])
    for choice in ("Yes", "No"):
        got = replies[1].choice_probs[choice]
        assert got == pytest.approx(expected[first_token(vlm, choice)].item(), rel=1e-4)
    single = vlm.complete([requests[0]])[0]
    assert single.choice_probs == pytest.approx(replies[0].choice_probs, rel=1e-4)
    # the image reaches the model: another colour, another distribution
    assert replies[0].choice_probs["Yes"] != pytest.approx(replies[2].choice_probs["Yes"], rel=1e-4)


def test_a_vlm_reads_images_in_a_batch(tiny_vlm_folder: Path, tmp_path) -> None:
    vlm = make_backend(hf(model=str(tiny_vlm_folder), images=True, batch_size=4))
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
    params = hf(model=str(copy), images=True)
    before = make_backend(params).identity()["revision"]
    (copy / "extra.json").write_text("{}")
    assert make_backend(params).identity()["revision"] != before


def test_config_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        make_backend(hf(model=str(tmp_path)))
    with pytest.raises(KeyError, match=r"hf backend: missing keys \['batch_size'\]"):
        make_backend({k: v for k, v in hf().items() if k != "batch_size"})
    with pytest.raises(KeyError, match="unknown keys \\['temprature'\\]"):
        make_backend({"backend": "hf", "model": "smollm2", "temprature": 0.1})
    with pytest.raises(ValueError, match="choose one of"):
        make_backend({"backend": "llamacpp"})


def test_a_fully_cached_rerun_never_loads_the_model(smollm2_folder: Path, tmp_path) -> None:
    from safeforge.cache import RowCache
    from safeforge.chain.chat import DESCRIBE_SCHEMA, Ask, Chat, Prompts
    from safeforge.config import compose

    prompts = Prompts.from_params(compose()["prompts"])
    asks = [Ask("a", {}), Ask("b", {})]
    replies = []
    for _ in range(2):
        backend = make_backend(hf(model="smollm2"))
        chat = Chat(backend, prompts, RowCache("t", tmp_path), sampling(max_tokens=6), 4)
        replies.append(chat.ask("describe", asks, DESCRIBE_SCHEMA))
    assert backend.model is None  # the second backend answered everything from the cache
    assert replies[0] == replies[1]
