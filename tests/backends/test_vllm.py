"""The vLLM backend without a GPU: its pure parts, and complete() against a stand-in engine."""

from __future__ import annotations

import base64
import importlib.util
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from helpers import conf_option, sampling
from PIL import Image

from safeforge.backends import make_backend
from safeforge.backends.base import ChatRequest, Reply, Sampling
from safeforge.backends.vllm import (
    VLLMBackend,
    build_conversation,
    choice_sampling_kwargs,
    make_sampling_params,
    parse_choice_output,
    parse_output,
    sampling_kwargs,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def vllm_params(**changes: Any) -> dict[str, Any]:
    """conf/generator/vllm.yaml composed, with `changes` on top."""
    return conf_option("generator", "vllm", **changes)


CONF = Path(__file__).resolve().parents[2] / "conf" / "generator" / "vllm.yaml"


def request(text: str = "hi", images: tuple[str, ...] = (), **kw: Any) -> ChatRequest:
    messages = ({"role": "system", "content": "Be safe."}, {"role": "user", "content": text})
    kw.setdefault("sampling", sampling())
    return ChatRequest(messages=messages, images=images, **kw)


def output(text: str | None, finish: str | None = "stop") -> SimpleNamespace:
    """Shaped like vLLM's RequestOutput: `.outputs[0].text` and `.finish_reason`."""
    return SimpleNamespace(outputs=[SimpleNamespace(text=text, finish_reason=finish)])


@dataclass
class Logprob:
    """Laid out as vllm.logprobs.Logprob: a token's log probability, vocab rank, decoded text."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


def logprob_output(
    first: dict[int, float], finish: str | None = "length", text: str = "Yes"
) -> SimpleNamespace:
    """A RequestOutput of one generated token with logprobs: `.outputs[0].logprobs` is a list
    with one {token id: Logprob} dict per generated position. `first` maps id -> probability."""
    ranked = sorted(first.items(), key=lambda item: -item[1])
    position = {t: Logprob(math.log(p), rank, f"<{t}>") for rank, (t, p) in enumerate(ranked, 1)}
    completion = SimpleNamespace(text=text, finish_reason=finish, logprobs=[position])
    return SimpleNamespace(outputs=[completion])


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path)
    return path


# --- import and construction -------------------------------------------------------------


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here")
def test_constructing_without_vllm_says_how_to_install() -> None:
    with pytest.raises(ImportError, match=r"safeforge\[gpu\]"):
        make_backend(vllm_params(model="some/model"))


def test_from_params_rejects_unknown_keys() -> None:
    with pytest.raises(KeyError, match="max_model_length") as info:
        VLLMBackend(vllm_params(model="m", max_model_length=10), load=False)
    assert "max_model_len" in str(info.value)  # names the known keys too


def test_defaults_and_conf_file() -> None:
    import yaml

    params = yaml.safe_load(CONF.read_text())
    backend = VLLMBackend(params, load=False)
    assert backend.params["trust_remote_code"] is False
    assert backend.model_id == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert backend.revision == ""  # null revision
    assert backend.supports_images is True
    assert backend.default_sampling == Sampling(max_tokens=1024, temperature=0.0, top_p=1.0, seed=0)
    assert backend.identity() == {"backend": "vllm", "model": backend.model_id, "revision": ""}
    assert backend.choice_logprobs == 20
    with pytest.raises(KeyError, match=r"missing keys \[.*'batch_size'"):
        VLLMBackend({"backend": "vllm", "model": "m"}, load=False)  # conf/ holds the rest
    with pytest.raises(KeyError):
        VLLMBackend(vllm_params(model="m", sampling={"temp": 1}), load=False)
    with pytest.raises(ValueError, match="choice_logprobs"):
        VLLMBackend(vllm_params(model="m", choice_logprobs=0), load=False)


# --- pure functions ----------------------------------------------------------------------


def test_build_conversation_without_images() -> None:
    req = request("hello")
    assert build_conversation(req) == [
        {"role": "system", "content": "Be safe."},
        {"role": "user", "content": "hello"},
    ]


def test_build_conversation_with_an_image(png: Path) -> None:
    system, user = build_conversation(request("what is this?", images=(str(png),)))
    assert system == {"role": "system", "content": "Be safe."}
    image, text = user["content"]
    assert text == {"type": "text", "text": "what is this?"}
    assert image["type"] == "image_url"
    url = image["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png.read_bytes()


def test_sampling_kwargs_greedy_drops_seed_and_top_p() -> None:
    kw = sampling_kwargs(Sampling(max_tokens=64, temperature=0.0, top_p=0.5, seed=7), None)
    assert kw == {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": None}


def test_sampling_kwargs_sampled_keeps_them() -> None:
    kw = sampling_kwargs(Sampling(max_tokens=32, temperature=0.7, top_p=0.9, seed=3), None)
    assert kw == {"max_tokens": 32, "temperature": 0.7, "top_p": 0.9, "seed": 3}


def test_sampling_kwargs_carries_the_schema_as_a_plain_dict() -> None:
    from types import MappingProxyType

    schema = MappingProxyType({"type": "object", "properties": {"ok": {"type": "boolean"}}})
    kw = sampling_kwargs(sampling(), schema)
    assert kw["json_schema"] == {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    assert type(kw["json_schema"]) is dict
    assert kw["max_tokens"] == sampling().max_tokens


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        (output("fine", "stop"), Reply("fine", "stop")),
        (output("cut", "length"), Reply("cut", "length")),
        (output("", "stop"), Reply("", "stop")),
    ],
)
def test_parse_output(out: SimpleNamespace, expected: Reply) -> None:
    assert parse_output(out) == expected


def test_parse_output_failures_are_error_replies() -> None:
    for bad in (SimpleNamespace(outputs=[]), SimpleNamespace(outputs=None), output(None)):
        reply = parse_output(bad)
        assert not reply.ok and reply.finish_reason == "error" and reply.text == ""
    aborted = parse_output(output("par", "abort"))
    assert not aborted.ok and "abort" in (aborted.error or "")


def test_choice_sampling_kwargs_ask_one_token_and_its_logprobs() -> None:
    assert choice_sampling_kwargs(7) == {
        "max_tokens": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": None,
        "logprobs": 7,
    }


def test_parse_choice_output_reads_the_first_position() -> None:
    out = logprob_output({10: 0.5, 11: 0.2, 12: 0.1})
    out.outputs[0].logprobs.append({11: Logprob(0.0, 1, "<11>")})  # a second position: ignored
    reply, missing = parse_choice_output(out, {"Yes": 10, "No": 11})
    assert reply.choice_probs == pytest.approx({"Yes": 0.5, "No": 0.2})
    assert (reply.text, reply.finish_reason, missing) == ("Yes", "stop", [])
    reply, missing = parse_choice_output(out, {"No": 11, "Unsure": 99, "Maybe": 12})
    assert reply.choice_probs == pytest.approx({"No": 0.2, "Unsure": 0.0, "Maybe": 0.1})
    assert reply.text == "No" and missing == ["Unsure"]


def test_parse_choice_output_failures_are_error_replies() -> None:
    no_logprobs = logprob_output({10: 0.5})
    no_logprobs.outputs[0].logprobs = None  # logprobs were not asked for
    empty = logprob_output({10: 0.5})
    empty.outputs[0].logprobs = []
    for bad in (SimpleNamespace(outputs=[]), no_logprobs, empty, logprob_output({10: 1}, "abort")):
        reply, missing = parse_choice_output(bad, {"Yes": 10})
        assert not reply.ok and reply.choice_probs is None and missing == []
    assert "no logprobs" in (parse_choice_output(no_logprobs, {"Yes": 10})[0].error or "")


# --- complete() against a stand-in engine ------------------------------------------------


class FakeLLM:
    """Stands in for the GPU engine only (vllm.LLM.chat): echoes each conversation's last user
    text, records every call, and fails a whole call when any conversation says "boom". A
    request asking for logprobs gets a first position of `next_token` (token id -> probability);
    `get_tokenizer()` is a real tokenizer when given one."""

    def __init__(self, tokenizer: Any = None, next_token: dict[int, float] | None = None) -> None:
        self.calls: list[tuple[list, list]] = []
        self.tokenizer, self.next_token = tokenizer, next_token or {}

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def chat(self, conversations: list, sampling_params: list, use_tqdm: bool = True) -> list:
        assert use_tqdm is False
        assert len(sampling_params) == len(conversations)
        self.calls.append((conversations, sampling_params))
        texts = []
        for conversation in conversations:
            content = conversation[-1]["content"]
            texts.append(content if isinstance(content, str) else content[-1]["text"])
        if any("boom" in t for t in texts):
            raise ValueError("bad image in batch")
        return [
            logprob_output(dict(list(self.next_token.items())[: p["logprobs"]]))
            if "logprobs" in p
            else output(f"echo:{t}")
            for t, p in zip(texts, sampling_params, strict=True)
        ]


def fake_backend(llm: FakeLLM | None = None, **params: Any) -> tuple[VLLMBackend, FakeLLM]:
    backend = VLLMBackend(vllm_params(model="m", **params), load=False)
    backend._llm = llm = llm or FakeLLM()
    backend._make_sampling = dict  # the kwargs themselves stand in for SamplingParams
    return backend, llm


def test_complete_batches_in_order() -> None:
    backend, llm = fake_backend(batch_size=2)
    reqs = [request(f"q{i}") for i in range(5)]
    replies = backend.complete(reqs)
    assert [r.text for r in replies] == [f"echo:q{i}" for i in range(5)]
    assert [len(convs) for convs, _ in llm.calls] == [2, 2, 1]


def test_complete_passes_one_sampling_per_request() -> None:
    backend, llm = fake_backend()
    schema = {"type": "object"}
    backend.complete(
        [
            request("a"),
            request("b", sampling=sampling(temperature=0.8, seed=5), json_schema=schema),
        ]
    )
    [(_, params)] = llm.calls
    assert params[0] == {"max_tokens": 512, "temperature": 0.0, "top_p": 1.0, "seed": None}
    assert params[1]["seed"] == 5 and params[1]["json_schema"] == schema


def test_a_failing_batch_falls_back_to_one_at_a_time() -> None:
    backend, llm = fake_backend(batch_size=3)
    replies = backend.complete([request("a"), request("boom"), request("c"), request("d")])
    assert [r.text for r in replies] == ["echo:a", "", "echo:c", "echo:d"]
    assert replies[1].finish_reason == "error" and "bad image" in (replies[1].error or "")
    # the failed chunk of 3, then its 3 requests alone, then the last chunk
    assert [len(convs) for convs, _ in llm.calls] == [3, 1, 1, 1, 1]


def test_unreadable_image_fails_only_its_request(png: Path, tmp_path: Path) -> None:
    backend, llm = fake_backend()
    replies = backend.complete(
        [request("ok", images=(str(png),)), request("gone", images=(str(tmp_path / "no.png"),))]
    )
    assert replies[0] == Reply("echo:ok", "stop")
    assert not replies[1].ok and "FileNotFoundError" in (replies[1].error or "")
    assert [len(convs) for convs, _ in llm.calls] == [1]  # caught before the batch call


def test_requests_the_model_cannot_take_are_refused_before_the_gpu(png: Path) -> None:
    backend, llm = fake_backend(images=False)
    replies = backend.complete([request("text"), request("pic", images=(str(png),))])
    assert replies[0].ok and not replies[1].ok
    assert [len(convs) for convs, _ in llm.calls] == [1]

    backend, llm = fake_backend(max_images_per_prompt=1)
    (reply,) = backend.complete([request("two", images=(str(png), str(png)))])
    assert not reply.ok and "max_images_per_prompt" in (reply.error or "")
    assert llm.calls == []  # nothing left to send


@pytest.fixture(scope="module")
def tokenizer(smollm2_folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_folder)


def test_complete_answers_choices_from_logprobs(tokenizer: Any, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="safeforge.backends.vllm")
    yes, no = (tokenizer.encode(w, add_special_tokens=False)[0] for w in ("Yes", "No"))
    # most probable first, as vLLM ranks them; top-2 leaves "No" out
    llm = FakeLLM(tokenizer, {yes: 0.5, 42: 0.3, no: 0.1})
    backend, llm = fake_backend(llm, choice_logprobs=2)
    choice = request("Is it safe?", choices=("Yes", "No"))
    replies = backend.complete([choice, request("plain"), choice])
    assert replies[1] == Reply("echo:plain", "stop")
    for reply in (replies[0], replies[2]):
        assert reply.choice_probs == pytest.approx({"Yes": 0.5, "No": 0.0})
        assert reply.text == "Yes" and reply.finish_reason == "stop"
    [(_, params)] = llm.calls
    assert params[0] == choice_sampling_kwargs(2) and "logprobs" not in params[1]
    # one debug line for the batch, not one per request
    assert caplog.messages == [
        "vLLM: 2 of 2 choice requests had a choice outside the top-2 logprobs (0.0)"
    ]


def test_complete_refuses_choices_sharing_a_first_token(tokenizer: Any) -> None:
    backend, llm = fake_backend(FakeLLM(tokenizer))
    shared = request("Sure?", choices=("Yes", "Yes, definitely"))
    with pytest.raises(ValueError, match="'Yes' and 'Yes, definitely' share their first token"):
        backend.complete([request("fine"), shared])
    assert llm.calls == []  # refused before the engine saw anything


# --- the calls into vllm, against a stub of its documented API ---------------------------


def stub_vllm(monkeypatch: pytest.MonkeyPatch, *, new_api: bool) -> dict[str, Any]:
    """A stand-in `vllm` package exposing only the names the backend uses (LLM, SamplingParams,
    and StructuredOutputsParams, or GuidedDecodingParams before it existed); records calls."""
    seen: dict[str, Any] = {}
    vllm, sp = ModuleType("vllm"), ModuleType("vllm.sampling_params")
    vllm.LLM = lambda **kw: seen.setdefault("llm", kw)
    vllm.SamplingParams = lambda **kw: ("SamplingParams", kw)
    name = "StructuredOutputsParams" if new_api else "GuidedDecodingParams"
    setattr(sp, name, lambda json: (name, json))
    vllm.sampling_params = sp
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    return seen


def test_engine_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = stub_vllm(monkeypatch, new_api=True)
    VLLMBackend(vllm_params(model="org/vlm", max_images_per_prompt=2))._load()  # as on first use
    assert seen["llm"]["model"] == "org/vlm" and seen["llm"]["trust_remote_code"] is False
    assert seen["llm"]["limit_mm_per_prompt"] == {"image": 2}
    seen = stub_vllm(monkeypatch, new_api=True)
    VLLMBackend(vllm_params(model="org/llm", images=False))._load()
    assert "limit_mm_per_prompt" not in seen["llm"]  # vLLM refuses it for text-only models
    assert "max_logprobs" not in seen["llm"]  # the engine's default 20 covers choice_logprobs
    seen = stub_vllm(monkeypatch, new_api=True)
    VLLMBackend(vllm_params(model="org/llm", choice_logprobs=50))._load()
    assert seen["llm"]["max_logprobs"] == 50


@pytest.mark.parametrize(
    ("new_api", "keyword", "cls"),
    [
        (True, "structured_outputs", "StructuredOutputsParams"),
        (False, "guided_decoding", "GuidedDecodingParams"),
    ],
)
def test_json_schema_uses_the_installed_api(
    monkeypatch: pytest.MonkeyPatch, new_api: bool, keyword: str, cls: str
) -> None:
    stub_vllm(monkeypatch, new_api=new_api)
    schema = {"type": "object"}
    _, kw = make_sampling_params(sampling_kwargs(sampling(max_tokens=8), schema))
    assert kw == {
        "max_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": None,
        keyword: (cls, schema),
    }
    _, kw = make_sampling_params(sampling_kwargs(sampling(max_tokens=8), None))
    assert keyword not in kw
