"""An OpenAI-compatible backend's requests on Ray, through ray.data.llm's HTTP processor.

`generator=openai` (a `vllm serve` or any server) with executor=ray: `concurrency` actors send
each batch, one processor per server (the backend's base_url plus `executor.servers`), the rows
spread over them. The request body and the parsing of the reply are the backend's own
(OpenAIBackend.prepare, openai.parse_reply), so a reply and its row-cache key are the same
whichever executor asked. Requests that cannot be sent (an image a text-only model cannot take,
an unreadable file) fail on the driver, as the local backend fails them. Retries are Ray's (the
backend's max_retries and backoff_s); a request still failing after them fails the map, and
the batches already committed stay in the cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from safeforge.backends.base import ChatRequest, Reply
from safeforge.backends.cached import decode_reply, encode_reply


def _plain(value: Any) -> Any:
    """A row's nested value as JSON types again (Ray Data hands lists back as numpy arrays)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(f"{type(obj).__name__} is not JSON")

    return json.loads(json.dumps(value, default=default))


def http_batches(
    ray: Any,
    backend: Any,
    parse: Callable[[Any, Sequence[str]], Reply],
    requests: Sequence[ChatRequest],
    batch_size: int,
    concurrency: int,
    servers: Sequence[str],
) -> Iterator[tuple[list[int], list[Reply], list[bytes]]]:
    """(positions, replies, replies encoded) as the processors return them; `backend` an OpenAIBackend, `parse`
    its reply parser."""
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    rows = []
    for position, request in enumerate(requests):
        body = backend.prepare(request)
        if isinstance(body, Reply):
            yield [position], [body], [encode_reply(body)]
        else:  # the body as JSON text: Ray's Arrow blocks would fill absent keys with nulls
            rows.append(
                {"position": position, "body": json.dumps(body), "choices": request.choices}
            )
    urls = [backend.url, *(u.rstrip("/") + "/chat/completions" for u in servers)]
    parts = []
    for n, url in enumerate(urls):
        shard = rows[n :: len(urls)]
        if not shard:
            continue
        config = HttpRequestProcessorConfig(
            url=url,
            headers=backend.headers(),
            batch_size=batch_size,
            concurrency=concurrency,
            max_retries=backend.max_retries,
            base_retry_wait_time_in_s=backend.backoff_s,
        )
        processor = build_processor(
            config,
            preprocess=lambda row: {
                "position": row["position"],
                "choices": row["choices"],
                "payload": json.loads(row["body"]),
            },
            postprocess=lambda row: {
                "position": row["position"],
                "value": encode_reply(parse(_plain(row["http_response"]), list(row["choices"]))),
            },
        )
        parts.append(processor(ray.data.from_items(shard)))
    if not parts:
        return
    replies = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    for out in replies.iter_batches(batch_size=None, batch_format="numpy"):
        blobs = list(out["value"])
        yield out["position"].tolist(), [decode_reply(b) for b in blobs], blobs
