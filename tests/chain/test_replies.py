"""Model replies to values: every kind of malformed output gets its own reason."""

from __future__ import annotations

import pytest

from safeforge.backends.base import Reply
from safeforge.chain.chat import step_schemas
from safeforge.chain.replies import ReplyProblem, check_reply, extract_json

SCHEMAS = step_schemas(["privacy", "physical_injury"], top_k=2)


def reason(reply: Reply, schema: dict, no_refusal=()) -> str:
    with pytest.raises(ReplyProblem) as err:
        check_reply(reply, schema, no_refusal)
    return err.value.reason


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '```json\n{"a": 1}\n```\nHope this helps!',
        'Sure! Here it is: {"a": 1} and that is all.',
    ],
)
def test_json_is_found_bare_fenced_or_amid_prose(text: str) -> None:
    assert extract_json(text) == {"a": 1}


def test_a_valid_reply_is_returned_with_extra_keys_ignored() -> None:
    text = '{"unsafe_query": "q1", "benign_query": "q2", "image_dependent": true, "note": "x"}'
    assert check_reply(Reply(text), SCHEMAS["queries"])["unsafe_query"] == "q1"


def test_each_malformed_output_has_its_reason() -> None:
    queries, analyse = SCHEMAS["queries"], SCHEMAS["analyse"]
    assert reason(Reply("", "error", "HTTP 500 after 5 attempts"), queries) == "backend_error"
    assert reason(Reply('{"unsafe_query": "Can I', "length"), queries) == "truncated_output"
    assert reason(Reply("Here you go: unsafe query is ..."), queries) == "invalid_json"
    assert reason(Reply('{"unsafe_query": "q", "image_dependent": true}'), queries) == (
        "missing_field"
    )
    risk = '{"risks": [{"scenario": "s", "category": "arson", "analysis": "a"}]}'
    assert reason(Reply(risk), analyse) == "label_outside_taxonomy"
    wrong_type = '{"unsafe_query": "q", "benign_query": "b", "image_dependent": "yes"}'
    assert reason(Reply(wrong_type), queries) == "schema_mismatch"
    empty = '{"unsafe_query": "", "benign_query": "b", "image_dependent": true}'
    assert reason(Reply(empty), queries) == "schema_mismatch"


def test_a_refusal_where_a_query_was_asked_for_is_caught() -> None:
    text = '{"unsafe_query": "I\'m sorry, but I can\'t help with that.", "benign_query": "b", "image_dependent": true}'
    assert reason(Reply(text), SCHEMAS["queries"], ("unsafe_query",)) == "refusal"
    # the same words in a field not asked to be a query are fine
    assert check_reply(Reply(text), SCHEMAS["queries"])


def test_a_truncated_reply_whose_json_closed_is_usable() -> None:
    text = '{"description": "a cat on a sofa"}\n\nThis JSON describes'
    assert check_reply(Reply(text, "length"), SCHEMAS["describe"]) == {
        "description": "a cat on a sofa"
    }


def test_more_risks_than_top_k_are_not_a_failure() -> None:
    risk = {"scenario": "s", "category": "privacy", "analysis": "a"}
    text = '{"risks": [' + ",".join([str(risk).replace("'", '"')] * 3) + "]}"
    assert len(check_reply(Reply(text), SCHEMAS["analyse"])["risks"]) == 3
