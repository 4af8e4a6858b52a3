"""The one backend interface: a batch of chat requests in, one reply per request out.

A request is OpenAI-style messages (text content), the images that go with the last user
message (file paths), sampling, and optionally a JSON schema the reply must follow. Backends
render this into what their model needs (data URLs, a processor's chat template, vLLM's chat
API). A backend never raises for one bad request: it answers it with `Reply(error=...)`, so a
batch of 10,000 survives one timeout. Parsing and validating replies is the caller's job.
"""

from __future__ import annotations

import base64
import functools
import mimetypes
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from safeforge.io import sha256_file


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Sampling:
        check_keys("sampling", params, cls.__dataclass_fields__)
        return cls(**params)


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Mapping[str, str], ...]  # {"role": "system"|"user"|"assistant", "content": str}
    images: tuple[str, ...] = ()  # paths, shown with the last user message
    sampling: Sampling = field(default_factory=Sampling)
    json_schema: Mapping[str, Any] | None = None  # the reply must be JSON of this schema

    def key_parts(self) -> dict[str, Any]:
        """What decides the reply, for the row cache: images by content, not by path."""
        return {
            "messages": [dict(m) for m in self.messages],
            "images": [file_sha256(p) for p in self.images],
            "sampling": asdict(self.sampling),
            "json_schema": self.json_schema,
        }


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str = "stop"  # "stop", "length" (cut at max_tokens) or "error"
    error: str | None = None  # why there is no text: timeout, HTTP 500 after retries, ...

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, why: str | BaseException) -> Reply:
        """The reply for a request that got no answer; an exception is named with its type."""
        if isinstance(why, BaseException):
            why = f"{type(why).__name__}: {why}"
        return cls("", "error", why)


class Backend(ABC):
    """Subclasses set `name`, `model_id` and `revision` and implement `complete`."""

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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release GPU memory, connections, worker threads."""


def check_keys(where: str, params: Mapping[str, Any], known: Iterable[str]) -> None:
    """A misspelt config key fails loudly, naming it and the keys that exist."""
    unknown = set(params) - set(known)
    if unknown:
        raise KeyError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")


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
