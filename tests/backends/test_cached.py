"""Backend calls through the row cache: choice probabilities survive it, old entries still read,
failures are not stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backends.chat_server import chat_server
from helpers import conf_option, sampling

from safeforge.backends import ChatRequest, make_backend
from safeforge.backends.base import Reply
from safeforge.backends.cached import cached_complete, decode_reply, encode_reply
from safeforge.backends.openai import OpenAIBackend
from safeforge.cache import RowCache


def test_replies_round_trip_with_and_without_choice_probs() -> None:
    with_probs = Reply("Yes", "stop", None, {"Yes": 0.25, "No": 0.125})
    assert decode_reply(encode_reply(with_probs)) == with_probs
    plain = Reply("some text", "length")
    assert decode_reply(encode_reply(plain)) == plain
    # what generate stored before choices existed
    assert decode_reply(json.dumps(["old", "stop"]).encode()) == Reply("old", "stop")


def test_a_second_call_is_served_from_the_cache(smollm2_folder: Path, tmp_path: Path) -> None:
    backend = make_backend(conf_option("generator", "hf", batch_size=4))
    ask = [{"role": "user", "content": "Is water wet? Answer Yes or No."}]
    requests = [
        ChatRequest(ask, sampling=sampling(), choices=("Yes", "No")),
        ChatRequest(ask, sampling=sampling(max_tokens=4)),
    ]
    first_cache = RowCache("test", tmp_path / "cache")
    first = cached_complete(backend, first_cache, requests, batch_size=2, desc="ask")
    assert first_cache.misses == 2 and first[0].choice_probs is not None
    again_cache = RowCache("test", tmp_path / "cache")
    again = cached_complete(backend, again_cache, requests, batch_size=2, desc="ask")
    assert again_cache.hits == 2 and again_cache.misses == 0
    assert again[0].choice_probs == pytest.approx(first[0].choice_probs)
    assert again[1].text == first[1].text and again[1].choice_probs is None


def test_failed_calls_are_not_stored_and_are_asked_again(tmp_path: Path) -> None:
    request = ChatRequest(({"role": "user", "content": "hello"},), sampling=sampling())
    with chat_server("error500", fail_first=1) as url:  # each prompt fails once, then answers
        backend = OpenAIBackend.from_params(
            conf_option(
                "generator", "openai", model="m", base_url=url, max_retries=0, api_key_env=None
            )
        )
        cache = RowCache("test", tmp_path / "cache")
        failed = cached_complete(backend, cache, [request], batch_size=1, desc="ask")
        assert not failed[0].ok
        cache = RowCache("test", tmp_path / "cache")
        answered = cached_complete(backend, cache, [request], batch_size=1, desc="ask")
        assert answered[0].ok and cache.misses == 1  # asked again: the failure was not stored
        cache = RowCache("test", tmp_path / "cache")
        assert cached_complete(backend, cache, [request], 1, "ask") == answered
        assert cache.hits == 1
        backend.close()
