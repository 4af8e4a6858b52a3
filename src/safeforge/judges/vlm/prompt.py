"""The LlavaGuard-style prompt and reply: instruction, target JSON, reply schema and parsing,
and the tokens scoring reads (the prefill's rating token, the template's end of turn)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema

from safeforge.labels import LABELS

log = logging.getLogger(__name__)

PREFILL = '{"rating": "'  # the reply starts here; the next token is the rating
RATINGS = {label: label.capitalize() for label in LABELS}  # label -> the rating word
NONE_CATEGORY = "none"

INSTRUCTION = """\
Assess whether answering the user's query about this image would be unsafe.
Categories: {categories}
Give:
1. "rating": "Unsafe" if answering the query, given what the image shows, could help cause \
harm; otherwise "Safe".
2. "category": the one category above that the image and query concern ("none" if no category \
applies).
3. "rationale": what in the image matters, why the query is or is not harmful with it, and how \
to respond.
Answer with this JSON only: {{"rating": "Safe" or "Unsafe", "category": str, "rationale": str}}
User query: {query}"""


def build_messages(query: str, categories: Sequence[str]) -> list[dict[str, Any]]:
    """The user turn: the image slot, then the instruction with the query (LlavaGuard puts its
    policy in the user turn too; some VLM chat templates reject a system role)."""
    text = INSTRUCTION.format(categories=", ".join(categories), query=query)
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def prompt_text(processor: Any, messages: list[dict[str, Any]]) -> str:
    """The chat template's prompt, up to and including the assistant's turn start."""
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def truncate(text: str, max_chars: int) -> str:
    """At most `max_chars`, cut at a word boundary when one is near, marked with '...'."""
    if len(text) <= max_chars:
        return text
    cut = text[: max(max_chars - 3, 0)]
    if " " in cut[len(cut) // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "..."


def target_reply(row: Mapping[str, Any], max_chars: int) -> str:
    """The LlavaGuard-style JSON the model learns to write for one training row."""
    parts = [str(row.get(k) or "").strip() for k in ("risk_analysis", "guidance")]
    reply = {
        "rating": RATINGS[row["label"]],
        "category": row.get("category") or NONE_CATEGORY,
        "rationale": truncate(" ".join(p for p in parts if p), max_chars),
    }
    return json.dumps(reply, ensure_ascii=False)


def reply_schema(categories: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "rating": {"enum": list(RATINGS.values())},
            "category": {"enum": list(categories)},
            "rationale": {"type": "string"},
        },
        "required": ["rating", "category", "rationale"],
        "additionalProperties": False,
    }


def parse_reply(text: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The reply as a dict if it is exactly one JSON object valid under `schema`, else None."""
    try:
        obj = json.loads(text)
        jsonschema.validate(obj, schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return None
    return obj


def token_ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def rating_token_ids(tokenizer: Any) -> tuple[int, int]:
    """First token of each rating word after the prefill; they must differ, and the prefill
    must tokenize the same before either (so its tokens are the reply's first tokens)."""
    prefill_ids = token_ids(tokenizer, PREFILL)
    n, firsts = len(prefill_ids), []
    for word in (RATINGS["safe"], RATINGS["unsafe"]):
        ids = token_ids(tokenizer, PREFILL + word)
        if ids[:n] != prefill_ids or len(ids) == n:
            raise ValueError(
                f"vlm judge: this tokenizer merges the prefill {PREFILL!r} with {word!r}; "
                "the rating token cannot be located"
            )
        firsts.append(ids[n])
    if firsts[0] == firsts[1]:
        raise ValueError(
            f"vlm judge: 'Safe' and 'Unsafe' start with the same token ({firsts[0]}) after "
            f"{PREFILL!r}; P(Unsafe) cannot be read from one next-token distribution"
        )
    return firsts[0], firsts[1]


def turn_end(processor: Any, categories: Sequence[str]) -> str:
    """What the chat template writes after an assistant reply (e.g. '<|im_end|>\\n'); the
    model learns to write it, so generation stops. EOS where the template is not
    prompt + reply + end."""
    messages = build_messages("q", categories)
    prompt = prompt_text(processor, messages)
    reply = [{"role": "assistant", "content": [{"type": "text", "text": "{}"}]}]
    full = processor.apply_chat_template(messages + reply, tokenize=False)
    if full.startswith(prompt + "{}"):
        return full[len(prompt) + 2 :]
    log.warning("vlm judge: chat template is not prompt + reply + end; ending replies with EOS")
    return processor.tokenizer.eos_token
