"""The backend interface itself: request validation, row-cache keys, choice replies, and the
first-token rule on a real tokenizer (SmolLM2's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import sampling

from safeforge.backends.base import ChatRequest, Reply, Sampling, choice_token_ids
from safeforge.cache import cache_key

IDENTITY = {"backend": "hf", "model": "m", "revision": "r"}


def ask(messages, **kw) -> ChatRequest:
    return ChatRequest(messages, sampling=sampling(), **kw)


def plain_request() -> ChatRequest:
    return ChatRequest(
        messages=({"role": "user", "content": "Is this safe?"},), sampling=sampling()
    )


def full_request(image: Path) -> ChatRequest:
    return ChatRequest(
        messages=(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Describe."},
        ),
        images=(str(image),),
        sampling=Sampling(max_tokens=64, temperature=0.7, top_p=0.9, seed=3),
        json_schema={"type": "object", "properties": {"label": {"type": "string"}}},
    )


def test_requests_without_choices_keep_their_row_cache_keys(tmp_path: Path) -> None:
    # digests computed with the code before `choices` existed: a change here would silently
    # re-run every cached chat call of every dataset
    image = tmp_path / "a.png"
    image.write_bytes(b"pixels, not really a png")
    pinned = {
        "bb50ff020a19664332b186c99ddb7121e6649ea294e5a615a74ecb9807eb69a4": plain_request(),
        "48179d99004e61a47e4884a2e0124147cb5973400bf74d65f27e7773a337a501": full_request(image),
    }
    for digest, request in pinned.items():
        assert "choices" not in request.key_parts()
        assert cache_key(kind="chat", **IDENTITY, request=request.key_parts()) == digest


def test_choices_are_part_of_the_key_and_their_order_counts() -> None:
    messages = plain_request().messages
    keys = {
        cache_key(kind="chat", **IDENTITY, request=ask(messages, choices=c).key_parts())
        for c in [(), ("Yes", "No"), ("No", "Yes"), ("Safe", "Unsafe")]
    }
    assert len(keys) == 4
    assert ask(messages, choices=("Yes", "No")).key_parts()["choices"] == ["Yes", "No"]


def test_json_schema_and_choices_together_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="json_schema or choices, not both"):
        ask(plain_request().messages, json_schema={"type": "object"}, choices=("Yes",))


@pytest.mark.parametrize(
    ("choices", "error"),
    [("Yes", TypeError), (("Yes", ""), ValueError), (("Yes", "Yes"), ValueError)],
)
def test_malformed_choices_are_refused(choices, error) -> None:
    with pytest.raises(error, match="choices="):
        ask(plain_request().messages, choices=choices)


def test_a_choice_reply_names_the_most_probable_choice() -> None:
    reply = Reply.from_choice_probs({"Yes": 0.2, "No": 0.3})
    assert (reply.text, reply.finish_reason, reply.ok) == ("No", "stop", True)
    assert reply.choice_probs == {"Yes": 0.2, "No": 0.3}  # as measured, not renormalised
    assert Reply.from_choice_probs({"A": 0.1, "B": 0.1}).text == "A"  # a tie: the first
    nothing = Reply.from_choice_probs({"Yes": 0.0, "No": 0.0})  # both outside a server's top k
    assert nothing.ok and nothing.text == "" and nothing.choice_probs == {"Yes": 0.0, "No": 0.0}
    assert Reply("x").choice_probs is None and Reply.failed("why").choice_probs is None


@pytest.fixture(scope="module")
def tokenizer(smollm2_folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_folder)


def test_choice_token_ids_are_the_first_token_of_each_choice(tokenizer) -> None:
    ids = choice_token_ids(tokenizer, ("Yes", "No", "Unsafe"))
    assert list(ids) == ["Yes", "No", "Unsafe"]
    for choice, token in ids.items():
        assert token == tokenizer.encode(choice, add_special_tokens=False)[0]
        assert tokenizer.decode([token]) and choice.startswith(tokenizer.decode([token]))
    assert len(set(ids.values())) == 3


def test_choices_sharing_a_first_token_are_an_error_naming_them(tokenizer) -> None:
    # precondition: "Yes, definitely" starts with the token "Yes"
    first = tokenizer.encode("Yes, definitely", add_special_tokens=False)[0]
    assert first == tokenizer.encode("Yes", add_special_tokens=False)[0]
    with pytest.raises(ValueError, match="'Yes' and 'Yes, definitely' share their first token"):
        choice_token_ids(tokenizer, ("No", "Yes", "Yes, definitely"))
