"""The one backend interface: a batch of chat requests in, one reply per request out.

A request is OpenAI-style messages (text content), the images that go with the last user
message (file paths), sampling, and optionally a JSON schema the reply must follow. Backends
render this into what their model needs (data URLs, a processor's chat template, vLLM's chat
API). A backend never raises for one bad request: it answers it with `Reply(error=...)`, so a
batch of 10,000 survives one timeout. Parsing and validating replies is the caller's job.

A request with `choices` (e.g. ("Yes", "No")) generates nothing: the backend reads the model's
next-token distribution as the assistant turn opens and replies with each choice's first-token
probability (softmax over the whole vocabulary, not renormalised over the choices), for judges
that score P(Yes) / (P(Yes) + P(No)). Choices whose first tokens are one token would share one
probability: that is the caller's mistake, so hf and vllm raise ValueError from `complete`
before any work; openai, with no tokenizer, answers with an error reply when two choices match
one returned token.
"""

from __future__ import annotations

import base64
import functools
import mimetypes
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from safeforge.config import from_section
from safeforge.io import sha256_file
from safeforge.shippable import Shippable


@dataclass(frozen=True)
class Sampling:
    """A backend section's `sampling:` (conf/generator/*.yaml): every value comes from conf/."""

    max_tokens: int
    temperature: float  # 0 = greedy
    top_p: float
    seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], where: str) -> Sampling:
        return from_section(cls, where, params)


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Mapping[str, str], ...]  # {"role": "system"|"user"|"assistant", "content": str}
    images: tuple[str, ...] = ()  # paths, shown with the last user message
    # the backend section's sampling (or a caller's own): no default, conf/ holds it
    sampling: Sampling = field(kw_only=True)
    json_schema: Mapping[str, Any] | None = None  # the reply must be JSON of this schema
    choices: tuple[str, ...] = ()  # read these answers' first-token probabilities; no generation

    def __post_init__(self) -> None:
        check_choices(self.choices)
        if self.choices and self.json_schema is not None:
            # a choice reply is one token, never JSON: asking for both is a caller's mistake
            raise ValueError("a request takes json_schema or choices, not both")

    def key_parts(self) -> dict[str, Any]:
        """What decides the reply, for the row cache: images by content, not by path."""
        parts = {
            "messages": [dict(m) for m in self.messages],
            "images": [file_sha256(p) for p in self.images],
            "sampling": asdict(self.sampling),
            "json_schema": self.json_schema,
        }
        if self.choices:  # only then: every request without choices keeps its cache key
            parts["choices"] = list(self.choices)
        return parts


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str = "stop"  # "stop", "length" (cut at max_tokens) or "error"
    error: str | None = None  # why there is no text: timeout, HTTP 500 after retries, ...
    choice_probs: Mapping[str, float] | None = None  # choice -> probability, for `choices`

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, why: str | BaseException) -> Reply:
        """The reply for a request that got no answer; an exception is named with its type."""
        if isinstance(why, BaseException):
            why = f"{type(why).__name__}: {why}"
        return cls("", "error", why)

    @classmethod
    def from_choice_probs(cls, probs: Mapping[str, float]) -> Reply:
        """The reply to a choices request: its text is the most probable choice (the first on a
        tie), or "" when every choice has probability 0 (none among the tokens a server listed)."""
        best = max(probs, key=lambda choice: probs[choice])
        return cls(best if probs[best] > 0 else "", "stop", None, dict(probs))


class Backend(Shippable, ABC):
    """Subclasses set `name`, `model_id` and `revision` and implement `complete`. A backend
    pickles without its engine (Shippable): a Ray actor's copy loads its own."""

    name: ClassVar[str]
    model_id: str
    revision: str
    supports_images: bool = False

    def identity(self) -> dict[str, str]:
        """The model part of every row-cache key: a different model never shares a reply."""
        return {"backend": self.name, "model": self.model_id, "revision": self.revision}

    @abstractmethod
    def complete(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        """One reply per request, in order; failures are replies with `error` set."""

    def load(self) -> None:
        """Load the model now rather than on the first request (a Ray actor's start)."""

    def close(self) -> None:
        """Release GPU memory, connections, worker threads."""


def check_choices(choices: Sequence[str]) -> None:
    """Choices are distinct, non-empty strings: each one becomes a key of `Reply.choice_probs`."""
    if isinstance(choices, str):
        raise TypeError(f"choices={choices!r}: a tuple of strings, e.g. ('Yes', 'No')")
    if any(not isinstance(c, str) or not c for c in choices):
        raise ValueError(f"choices={choices!r}: every choice must be a non-empty string")
    if len(set(choices)) != len(choices):
        raise ValueError(f"choices={choices!r}: a choice is repeated")


def choice_token_ids(tokenizer: Any, choices: Sequence[str]) -> dict[str, int]:
    """Each choice's first token: the first id of its encoding without special tokens. Two
    choices with one first token would get one probability between them, so that is an error."""
    ids: dict[str, int] = {}
    for choice in choices:
        tokens = tokenizer.encode(choice, add_special_tokens=False)
        if not tokens:
            raise ValueError(f"choice {choice!r} encodes to no tokens")
        ids[choice] = int(tokens[0])
    first_of: dict[int, str] = {}
    for choice, token in ids.items():
        if token in first_of:
            raise ValueError(
                f"choices {first_of[token]!r} and {choice!r} share their first token (id "
                f"{token}): their probabilities would be the same number; reword one of them"
            )
        first_of[token] = choice
    return ids


def file_sha256(path: str | Path) -> str:
    """Content hash of an image, computed once per file version: every chain step keys on it."""
    stat = os.stat(path)
    return _sha256(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1 << 16)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def image_data_url(path: str | Path) -> str:
    """`data:image/...;base64,...` for the OpenAI image_url content part."""
    mime = mimetypes.guess_type(str(path))[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def openai_messages(request: ChatRequest) -> list[dict]:
    """The request's messages with its images, as data-URL `image_url` parts, put before the
    text of the last user message: OpenAI's content-list form (servers and vLLM's chat API)."""
    messages = [dict(m) for m in request.messages]
    if not request.images:
        return messages
    image_parts = [
        {"type": "image_url", "image_url": {"url": image_data_url(p)}} for p in request.images
    ]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    text = messages[last_user]["content"]
    messages[last_user]["content"] = [*image_parts, {"type": "text", "text": text}]
    return messages
