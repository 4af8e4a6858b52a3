"""Backend calls through the row cache: each (model, request) is answered once, by any stage.

The key is the backend's identity plus the request's key parts (messages, images by content,
sampling, schema, choices); the value keeps what a caller reads back: text, finish reason and,
for a choices request, the choice probabilities. Failed calls are not stored, so the next run
asks again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from safeforge.backends.base import Backend, ChatRequest, Reply
from safeforge.cache import RowCache, cache_key


def encode_reply(reply: Reply) -> bytes:
    value = {"text": reply.text, "finish_reason": reply.finish_reason}
    if reply.choice_probs is not None:
        value["choice_probs"] = dict(reply.choice_probs)
    return json.dumps(value, separators=(",", ":")).encode()


def decode_reply(blob: bytes) -> Reply:
    value = json.loads(blob)
    if isinstance(value, list):  # stored before choices existed: [text, finish_reason]
        return Reply(*value)
    return Reply(value["text"], value["finish_reason"], choice_probs=value.get("choice_probs"))


def cached_complete(
    backend: Backend,
    cache: RowCache,
    requests: Sequence[ChatRequest],
    batch_size: int,
    desc: str,
) -> list[Reply]:
    """One reply per request, in order: cached ones read back, the rest asked in batches."""
    if not requests:
        return []
    identity = backend.identity()
    return cache.map(
        list(requests),
        key_fn=lambda r: cache_key(kind="chat", **identity, request=r.key_parts()),
        compute=backend.complete,
        encode=encode_reply,
        decode=decode_reply,
        batch_size=batch_size,
        desc=desc,
        keep=lambda r: r.ok,  # failed calls are tried again on the next run
    )
