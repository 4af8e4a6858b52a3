"""Model replies to usable values: JSON extracted, checked against the step's schema, and every
failure named with one reason from REASONS (what metrics/generate.json counts)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator

from safeforge.backends.base import Reply

REASONS = (
    "backend_error",  # no reply: timeouts, HTTP errors after the backend's own retries
    "truncated_output",  # cut at max_tokens before the JSON closed
    "invalid_json",
    "missing_field",
    "label_outside_taxonomy",
    "schema_mismatch",  # wrong type, empty text, too many items
    "refusal",  # the model refused to write what was asked (an unsafe query, say)
)

# A reply that opens like this is the model declining, not the query it was asked to write.
REFUSAL_START = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i can(?:'|no)?t|i cannot|i won'?t|i will not|"
    r"i'?m (?:not able|unable)|i am (?:not able|unable)|as an ai)\b",
    re.IGNORECASE,
)
# sent to servers that constrain decoding, but not worth losing a reply over: extra keys are
# ignored and a long list is cut by the caller
LENIENT = {"additionalProperties", "maxItems"}
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class ReplyProblem(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def extract_json(text: str) -> Any:
    """The JSON object in a reply: bare, in a ``` fence, or the first {...} amid prose
    (small models wrap JSON in chatter; the schema check decides whether it is usable)."""
    candidates = [text.strip(), *_FENCE.findall(text)]
    start = text.find("{")
    if start >= 0:
        candidates.append(text[start:])
    decoder = json.JSONDecoder()
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate.startswith("{"):
            continue
        try:
            value, _ = decoder.raw_decode(candidate)
            return value
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON object in the reply")


def check_reply(
    reply: Reply, schema: Mapping[str, Any], no_refusal: Sequence[str] = ()
) -> dict[str, Any]:
    """The reply's JSON object, valid against `schema`; else ReplyProblem(reason, detail).

    `no_refusal` names string fields that must not be a refusal (the queries the step asked for).
    """
    if not reply.ok:
        raise ReplyProblem("backend_error", reply.error or "no reply")
    try:
        value = extract_json(reply.text)
    except ValueError:
        if reply.finish_reason == "length":
            raise ReplyProblem(
                "truncated_output", "cut at max_tokens before the JSON closed"
            ) from None
        raise ReplyProblem("invalid_json", "no JSON object in the reply") from None
    errors = sorted(
        (e for e in Draft202012Validator(schema).iter_errors(value) if e.validator not in LENIENT),
        key=lambda e: list(e.path),
    )
    if errors:
        raise _as_problem(errors[0])
    for field in no_refusal:
        text = _get(value, field)
        if isinstance(text, str) and REFUSAL_START.match(text):
            raise ReplyProblem("refusal", f"{field} is a refusal: {text[:80]!r}")
    return value


def _as_problem(error: Any) -> ReplyProblem:
    where = "/".join(str(p) for p in error.absolute_path) or "reply"
    if error.validator == "required":
        return ReplyProblem("missing_field", f"{where}: {error.message}")
    if error.validator == "enum" and error.absolute_path and error.absolute_path[-1] == "category":
        return ReplyProblem(
            "label_outside_taxonomy", f"{where}: {error.instance!r} is not a category"
        )
    return ReplyProblem("schema_mismatch", f"{where}: {error.message[:200]}")


def _get(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
