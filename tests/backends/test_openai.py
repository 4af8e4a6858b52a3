"""OpenAIBackend against real HTTP servers on loopback: the scripted chat_server.py (every failure
mode on demand) and, marked slow, `transformers serve` with SmolLM2-135M-Instruct."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from backends.chat_server import chat_server, free_port, transformers_serve
from helpers import ROOT, conf_option, sampling
from PIL import Image

from safeforge.backends import ChatRequest, Reply, Sampling, make_backend
from safeforge.backends.openai import EMPTY_CHOICES, NO_LOGPROBS, OpenAIBackend

SECRET = "sk-test-SECRET-123"
SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


def ask(text: str, **kw) -> ChatRequest:
    kw.setdefault("sampling", sampling())
    return ChatRequest(messages=({"role": "user", "content": text},), **kw)


def scripted(*candidates: tuple[str, float], choices=("Yes", "No")) -> ChatRequest:
    """A choices request whose prompt scripts the server's next-token candidates, as
    (token, probability) pairs; the server sends their log probabilities."""
    script = {"next_token": [[token, math.log(p)] for token, p in candidates]}
    return ask(json.dumps(script), choices=choices)


def echoed(reply: Reply) -> dict:
    assert reply.ok, reply.error
    return json.loads(reply.text)


@pytest.fixture
def backend() -> Iterator:
    """backend(base_url, **params) -> OpenAIBackend with fast retries; closed after the test."""
    made: list[OpenAIBackend] = []

    def make(base_url: str, **params) -> OpenAIBackend:
        test = {"model": "test-model", "base_url": base_url, "timeout_s": 10, "backoff_s": 0.01}
        test = {**test, "api_key_env": None, **params}
        made.append(OpenAIBackend.from_params(conf_option("generator", "openai", **test)))
        return made[-1]

    yield make
    for b in made:
        b.close()


# --- requests and replies ------------------------------------------------------------------


def test_replies_keep_request_order_under_concurrency(backend) -> None:
    with chat_server("slow", delay=0.05) as url:
        replies = backend(url, concurrency=8).complete([ask(f"prompt {i}") for i in range(20)])
    assert [echoed(r)["echo"] for r in replies] == [f"prompt {i}" for i in range(20)]
    assert {r.finish_reason for r in replies} == {"stop"}


@pytest.mark.parametrize(("concurrency", "n"), [(1, 4), (8, 16)])
def test_concurrency_bounds_requests_in_flight(backend, concurrency: int, n: int) -> None:
    with chat_server("slow", delay=0.2) as url:
        replies = backend(url, concurrency=concurrency).complete([ask(f"p{i}") for i in range(n)])
    peak = max(echoed(r)["max_in_flight"] for r in replies)  # counted by the server
    assert peak <= concurrency
    assert peak > 1 if concurrency > 1 else peak == 1


def test_model_sampling_and_images_are_sent(backend, tmp_path: Path) -> None:
    images = []
    for i, color in enumerate(["red", "blue"]):
        images.append(tmp_path / f"{i}.png")
        Image.new("RGB", (8, 8), color).save(images[-1])
    chosen = Sampling(max_tokens=7, temperature=0.5, top_p=0.9, seed=3)
    with chat_server() as url:
        with_images, plain = backend(url).complete(
            [ask("look", images=tuple(map(str, images)), sampling=chosen), ask("no picture")]
        )
    got = echoed(with_images)
    assert (got["echo"], got["n_images"], got["model"]) == ("look", 2, "test-model")
    assert got["sampling"] == {"max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": 3}
    assert echoed(plain)["n_images"] == 0


def test_images_to_a_text_only_model_are_an_error_reply(backend, tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with chat_server() as url:
        bad, good = backend(url, images=False).complete(
            [ask("look", images=(str(tmp_path / "a.png"),)), ask("text")]
        )
    assert bad.finish_reason == "error" and "takes no images" in bad.error
    assert echoed(good)["echo"] == "text"


@pytest.mark.parametrize(
    ("enabled", "schema", "sent"),
    [
        (
            True,
            SCHEMA,
            {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
            },
        ),
        (True, None, None),
        (False, SCHEMA, None),
    ],
)
def test_response_format_only_when_enabled_and_given(backend, enabled, schema, sent) -> None:
    with chat_server() as url:
        [reply] = backend(url, json_schema=enabled).complete([ask("x", json_schema=schema)])
    assert echoed(reply)["response_format"] == sent


def test_finish_reason_length_passes_through(backend) -> None:
    with chat_server("length") as url:
        [reply] = backend(url).complete([ask("a long answer please")])
    assert reply.ok and reply.finish_reason == "length" and len(reply.text) == 10


def test_non_json_body_is_an_error_reply(backend) -> None:
    with chat_server("garbage") as url:
        [reply] = backend(url).complete([ask("x")])
    assert (reply.text, reply.finish_reason) == ("", "error")
    assert "not JSON" in reply.error


# --- choices: first-token probabilities from logprobs ------------------------------------


def test_choice_probs_come_from_the_top_logprobs(backend) -> None:
    with chat_server() as url:
        yes, no = backend(url).complete(
            [
                scripted(("Yes", 0.6), ("No", 0.25), ("Maybe", 0.05)),
                scripted(("No", 0.7), ("Yes", 0.1)),
            ]
        )
    assert yes.ok and no.ok, (yes.error, no.error)
    assert yes.choice_probs == pytest.approx({"Yes": 0.6, "No": 0.25})
    assert list(yes.choice_probs) == ["Yes", "No"]  # in the order of the choices
    assert (yes.text, no.text, yes.finish_reason) == ("Yes", "No", "stop")
    assert no.choice_probs == pytest.approx({"Yes": 0.1, "No": 0.7})


def test_choices_match_tokens_by_text(backend) -> None:
    candidates = [
        ("ĠYes", 0.4),  # byte-level BPE's space marker, then the whole choice
        ("Y", 0.2),  # a shorter prefix of "Yes": the longer match wins
        ("Yesterday", 0.1),  # longer than the choice: not its first token
        (" No", 0.15),  # a plain leading space
        ("▁", 0.05),  # a bare word marker is no text at all
        ("▁Saf", 0.03),  # SentencePiece's marker, then a prefix of "Safe"
        ("Nope", 0.02),  # not a prefix of "No"
    ]
    choices = ("Yes", "No", "Safe", "Unsure")
    with chat_server() as url:
        [reply] = backend(url).complete([scripted(*candidates, choices=choices)])
    assert reply.ok, reply.error
    assert reply.choice_probs == pytest.approx({"Yes": 0.4, "No": 0.15, "Safe": 0.03, "Unsure": 0})
    assert reply.text == "Yes"


def test_equally_long_matches_take_the_more_probable(backend) -> None:
    with chat_server() as url:
        [reply] = backend(url).complete([scripted(("Yes", 0.1), (" Yes", 0.3), ("No", 0.2))])
    assert reply.choice_probs == pytest.approx({"Yes": 0.3, "No": 0.2})


def test_only_the_top_k_asked_for_count(backend) -> None:
    request = scripted(("Yes", 0.5), ("Maybe", 0.3), ("No", 0.1))
    b = backend("http://127.0.0.1:1/v1", choice_logprobs=2)
    body = b._payload(request)
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 2)
    assert (body["temperature"], body["top_p"]) == (0.0, 1.0)
    assert "response_format" not in body
    with chat_server() as url:
        [reply] = backend(url, choice_logprobs=2).complete([request])
    # the server listed two candidates: "No" was third, so it was not measured
    assert reply.choice_probs == pytest.approx({"Yes": 0.5, "No": 0.0})


def test_no_choice_among_the_tokens_gives_zeros_and_no_text(backend) -> None:
    with chat_server() as url:
        [reply] = backend(url).complete([scripted(("Maybe", 0.9), ("Perhaps", 0.05))])
    assert reply.ok and reply.text == "" and reply.choice_probs == {"Yes": 0.0, "No": 0.0}


def test_choices_that_match_one_token_are_an_error_reply(backend) -> None:
    with chat_server() as url:
        shared, fine = backend(url).complete(
            [
                scripted(("Yes", 0.6), ("No", 0.3), choices=("Yes", "Yesterday", "No")),
                scripted(("Yes", 0.6), ("No", 0.3)),
            ]
        )
    assert not shared.ok and shared.choice_probs is None
    assert shared.error == "choices 'Yes' and 'Yesterday' both match the token 'Yes'"
    assert fine.ok


def test_a_server_without_logprobs_is_an_error_reply_not_a_guess(backend) -> None:
    # like `transformers serve`: the logprobs fields are ignored and a plain reply comes back
    with chat_server("nologprobs") as url:
        choice, plain = backend(url).complete([scripted(("Yes", 0.6)), ask("hello")])
    assert (choice.text, choice.finish_reason, choice.choice_probs) == ("", "error", None)
    assert choice.error == NO_LOGPROBS
    assert "returned no logprobs; use a server that supports them, e.g. vllm serve" in NO_LOGPROBS
    assert echoed(plain)["echo"] == "hello"


def test_choice_logprobs_outside_the_api_range_is_refused() -> None:
    for k in (0, 21):
        with pytest.raises(ValueError, match="choice_logprobs"):
            OpenAIBackend.from_params(
                conf_option("generator", "openai", api_key_env=None, choice_logprobs=k)
            )


# --- retries -------------------------------------------------------------------------------


def test_http_500_then_success(backend) -> None:
    with chat_server("error500", fail_first=2) as url:
        [reply] = backend(url, max_retries=4).complete([ask("x")])
    assert echoed(reply)["attempt"] == 3


def test_http_500_forever_fails_one_reply_not_the_batch(backend) -> None:
    with chat_server(fail_prompt="doomed") as url:
        replies = backend(url, max_retries=2).complete(
            [ask("a"), ask("doomed"), ask("b"), ask("c")]
        )
    assert replies[1] == Reply(text="", finish_reason="error", error="HTTP 500 after 3 attempts")
    assert [echoed(r)["echo"] for i, r in enumerate(replies) if i != 1] == ["a", "b", "c"]


def test_client_errors_are_not_retried(backend) -> None:
    with chat_server() as url:
        [reply] = backend(url.replace("/v1", "/nowhere")).complete([ask("x")])
    assert reply.error.startswith("HTTP 404")


def test_429_honours_retry_after(backend, caplog) -> None:
    caplog.set_level(logging.INFO, logger="safeforge.backends.openai")
    # own backoff of 30 s: only the server's Retry-After: 0 makes this quick
    with chat_server("ratelimit", fail_first=2) as url:
        [reply] = backend(url, backoff_s=30).complete([ask("x")])
    assert echoed(reply)["attempt"] == 3
    assert caplog.messages == ["HTTP 429; retry 1/4 in 0.00s", "HTTP 429; retry 2/4 in 0.00s"]


def test_dropped_connection_is_retried(backend) -> None:
    with chat_server("close", fail_first=2) as url:
        [reply] = backend(url).complete([ask("x")])
    assert echoed(reply)["attempt"] == 3
    with chat_server("close", fail_first=100) as url:
        [reply] = backend(url, max_retries=1).complete([ask("x")])
    assert reply.error == "connection closed without a reply after 2 attempts"


def test_timeout_is_an_error_reply(backend) -> None:
    with chat_server("slow", delay=1.0) as url:
        [reply] = backend(url, timeout_s=0.2, max_retries=1).complete([ask("x")])
    assert reply.finish_reason == "error"
    assert reply.error == "timeout (0.2 s) after 2 attempts"


def test_no_server_is_an_error_reply(backend) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    [reply] = backend(url, max_retries=1).complete([ask("x")])
    assert reply.error == "connection refused after 2 attempts"


# --- faults from a misbehaving server: retried or dropped with their reason, never a hang ----

TIMEOUT_S = 0.5  # small, so a reply that never ends is given up on quickly
# chat_server mode -> the reason a request it fails is retried for, then dropped with
RETRIED = {
    "error500": "HTTP 500",
    "error502": "HTTP 502",
    "error503": "HTTP 503",
    "ratelimit": "HTTP 429",  # with Retry-After: 0
    "ratelimit_bare": "HTTP 429",  # no Retry-After: our own backoff
    "close": "connection closed without a reply",
    "reset": "connection closed in the middle of the reply",
    "truncated": "reply is not JSON (HTTP 200, application/json)",
    "trickle": f"timeout ({TIMEOUT_S:g} s)",  # a body that never ends
    "stall": f"timeout ({TIMEOUT_S:g} s)",  # half a body, then silence
}


@pytest.mark.timeout(60)  # not a benchmark: only that no fault hangs the batch
@pytest.mark.parametrize("mode", RETRIED)
def test_a_passing_fault_is_retried(backend, mode: str) -> None:
    with chat_server(mode, fail_first=1) as url:
        b = backend(url, timeout_s=TIMEOUT_S, max_retries=2)
        replies = b.complete([ask(f"p{i}") for i in range(3)])
    assert [echoed(r)["echo"] for r in replies] == ["p0", "p1", "p2"]
    assert [echoed(r)["attempt"] for r in replies] == [2, 2, 2]
    assert b.stats == Counter({f"retry/{RETRIED[mode]}": 3})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", RETRIED)
def test_a_lasting_fault_drops_the_reply_with_its_reason(backend, mode: str) -> None:
    with chat_server(mode, fail_first=2) as url:
        b = backend(url, timeout_s=TIMEOUT_S, max_retries=1)
        [warm] = b.complete([ask("ok")])  # its two failing attempts, so it passes next time
        replies = b.complete([ask("a"), ask("ok"), ask("b")])
    reason = RETRIED[mode]
    dropped = Reply.failed(f"{reason} after 2 attempts")
    assert warm == dropped
    assert len(replies) == 3  # no row lost, and in order
    assert (replies[0], replies[2]) == (dropped, dropped)
    assert echoed(replies[1])["echo"] == "ok"
    assert b.stats == Counter({f"retry/{reason}": 3, f"failed/{reason}": 3})


@pytest.mark.timeout(60)
def test_an_empty_choices_list_is_dropped_at_once(backend) -> None:
    # a well-formed reply with nothing in it: asking again gets the same, so no retry
    with chat_server("nochoices", fail_first=1) as url:
        b = backend(url)
        first = b.complete([ask("a"), scripted(("Yes", 0.9)), ask("b")])
        again = b.complete([ask("a"), ask("b")])
    assert first == [Reply.failed(EMPTY_CHOICES)] * 3
    assert EMPTY_CHOICES == "reply has an empty choices list"
    assert [echoed(r)["attempt"] for r in again] == [2, 2]
    assert b.stats == Counter({f"failed/{EMPTY_CHOICES}": 3})


@pytest.mark.timeout(60)
def test_garbage_is_retried_then_dropped(backend) -> None:
    with chat_server("garbage") as url:
        b = backend(url, max_retries=1)
        [reply] = b.complete([ask("x")])
    reason = "reply is not JSON (HTTP 200, text/html)"
    assert reply == Reply.failed(f"{reason} after 2 attempts")
    assert b.stats == Counter({f"retry/{reason}": 1, f"failed/{reason}": 1})


def test_stats_key_a_client_error_by_its_status(backend) -> None:
    with chat_server() as url:
        b = backend(url.replace("/v1", "/nowhere"))
        b.complete([ask("x"), ask("y")])
    assert b.stats == Counter({"failed/HTTP 404": 2})


# --- configuration and the key -------------------------------------------------------------


def test_conf_file_builds_the_backend(monkeypatch) -> None:
    params = yaml.safe_load((ROOT / "conf/generator/openai.yaml").read_text())
    monkeypatch.setenv(params["api_key_env"], SECRET)
    b = make_backend(params)
    assert isinstance(b, OpenAIBackend) and b.supports_images
    assert b.default_sampling == Sampling(max_tokens=1024, temperature=0.0, top_p=1.0, seed=0)
    assert b.identity() == {"backend": "openai", "model": params["model"], "revision": "main"}
    b.close()


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(KeyError, match=r"'bogus'.*known:.*'concurrency'"):
        OpenAIBackend.from_params({"backend": "openai", "model": "m", "bogus": 1})


def test_unset_key_variable_is_named(monkeypatch) -> None:
    monkeypatch.delenv("SF_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ValueError, match="SF_TEST_MISSING_KEY is not set"):
        OpenAIBackend.from_params(
            conf_option("generator", "openai", api_key_env="SF_TEST_MISSING_KEY")
        )


def test_key_is_sent_but_never_shown(backend, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3's connection logs too
    monkeypatch.setenv("SF_TEST_KEY", SECRET)  # the server reads the expected key from here
    with chat_server(
        "error500", fail_first=1, fail_prompt="doomed", expect_key_env="SF_TEST_KEY"
    ) as url:
        b = backend(url, api_key_env="SF_TEST_KEY", max_retries=1)
        ok, failed, quoted = b.complete([ask("x"), ask("doomed"), ask("echo-auth-header")])
    assert echoed(ok)["auth_ok"] is True
    assert failed.error == "HTTP 500 after 2 attempts"
    assert quoted.error == 'HTTP 400: {"error": "bad: Bearer ***"}'  # redacted
    shown = [
        caplog.text,
        repr(b),
        str(b.identity()),
        *(r.error or "" for r in (ok, failed, quoted)),
    ]
    assert "retry 1/1" in caplog.text
    assert not [s for s in shown if SECRET in s]


def test_no_key_sends_no_authorization(backend) -> None:
    with chat_server() as url:
        [reply] = backend(url, api_key_env=None).complete([ask("x")])
    assert echoed(reply)["auth_ok"] is True  # the server expected no header and saw none


# --- a real server -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_server(smollm2_folder: Path) -> Iterator[str]:
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"`transformers serve` needs {missing} (extra transformers[serving])")
    with transformers_serve(smollm2_folder) as url:
        yield url


@pytest.mark.slow
def test_transformers_serve_smollm2(smollm2_server: str, smollm2_folder: Path) -> None:
    # the server is pinned to the folder and answers only to that model name
    params = {"model": str(smollm2_folder), "base_url": smollm2_server, "api_key_env": None}
    b = OpenAIBackend.from_params(
        conf_option("generator", "openai", **params, concurrency=2, images=False)
    )
    short = sampling(max_tokens=16)
    replies = b.complete(
        [
            ask("Say hello.", sampling=short),
            ask("Name a colour.", sampling=short),
            # transformers serve ignores response_format: the reply is plain text, and no error
            ask("Is fire hot? Answer in JSON.", sampling=short, json_schema=SCHEMA),
        ]
    )
    b.close()
    for reply in replies:
        assert reply.ok, reply.error
        assert reply.text.strip()
        assert reply.finish_reason in {"stop", "length"}
