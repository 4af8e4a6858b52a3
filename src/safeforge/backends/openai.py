"""Any OpenAI-compatible chat server (`vllm serve`, `transformers serve`, hosted APIs) over HTTP.

Requests run on a thread pool, at most `concurrency` in flight, each thread with its own
`requests.Session` (keep-alive, and Session is not documented as thread-safe). Transient
failures are retried up to `max_retries` times with exponential backoff (or the server's
Retry-After, in seconds): HTTP 429 and 5xx, timeouts, refused or dropped connections, a
connection closed in the middle of the body, and a 200 whose body is not JSON (garbage, or JSON
cut short: a server or proxy fault, not the model's). What still fails becomes
`Reply.failed(reason)`, the reason ending "after N attempts", so one bad request never sinks a
batch: `complete` returns one reply per request, in order. Not retried, as asking again gets the
same answer: other 4xx, a reply with an empty `choices` list or no message content, and a choices
request the server returned no logprobs for.

`timeout_s` bounds a whole request, not one socket read: the body is read in pieces against a
deadline `timeout_s` after the request started, so a server that trickles a reply that never
ends times out like one that never answers (requests' own timeout restarts with every byte).
Connecting and waiting for the status line are each bounded by `timeout_s` too.

`stats` counts, over the backend's life, each retry by its reason ("retry/HTTP 429") and each
failed reply by its reason ("failed/timeout (120 s)"), for a stage's metrics.

The API key is read from the environment and only ever put in the Authorization header: never
logged, never in an error, `repr()` or `identity()`.

A request with `choices` asks for one token with `logprobs` and the top `choice_logprobs` (at
most 20, the OpenAI API's cap) candidates. There is no tokenizer here, so choices are matched to
the returned tokens by text: a token matches a choice when its text, less leading whitespace and
a leading "Ġ"/"▁" word marker, is non-empty and equals the choice or begins it; the longest
match counts (the more probable on a tie), and a choice with none gets 0.0. Servers that ignore
`logprobs` (`transformers serve`) get an error reply, never a made-up probability.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import requests
import urllib3

from safeforge.backends import ray_http
from safeforge.backends.base import (
    Backend,
    ChatRequest,
    Reply,
    Sampling,
    openai_messages,
)
from safeforge.config import check_keys, require_keys

log = logging.getLogger(__name__)

_RETRY_STATUS = {429, 500, 502, 503, 504}
_MAX_SLEEP_S = 30.0
_READ_BYTES = 64 * 1024  # one body read takes what has arrived, up to this
EMPTY_CHOICES = "reply has an empty choices list"
_MAX_TOP_LOGPROBS = 20  # the OpenAI API refuses top_logprobs above this
_WORD_MARKERS = ("Ġ", "▁")  # byte-level BPE / SentencePiece "a space before this word"
NO_LOGPROBS = "the server returned no logprobs; use a server that supports them, e.g. vllm serve"


class _Retryable(Exception):
    """A failure worth another try; `wait_s` is the server's Retry-After, if it gave one."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.wait_s = reason, wait_s


class OpenAIBackend(Backend):
    name = "openai"
    # a copy in a Ray actor opens its own sessions and pool and counts its own stats
    _transient: ClassVar[dict[str, Callable[[], Any]]] = {
        "_local": threading.local,
        "_sessions": list,
        "_pool": lambda: None,
        "stats": Counter,
        "_stats_lock": threading.Lock,
    }

    def __init__(
        self,
        *,
        model: str,
        revision: str,
        base_url: str,
        api_key_env: str | None,
        concurrency: int,
        timeout_s: float,
        max_retries: int,
        json_schema: bool,
        images: bool,
        sampling: Sampling,
        backoff_s: float,
        choice_logprobs: int,
    ) -> None:
        """Every value from a backend section (conf/generator/openai.yaml): `from_params`."""
        if concurrency < 1 or max_retries < 0:
            raise ValueError(
                f"need concurrency >= 1, max_retries >= 0: {concurrency}, {max_retries}"
            )
        if not 1 <= choice_logprobs <= _MAX_TOP_LOGPROBS:
            raise ValueError(f"choice_logprobs={choice_logprobs}: need 1..{_MAX_TOP_LOGPROBS}")
        self.choice_logprobs = choice_logprobs
        self.model_id, self.revision = model, revision
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.send_schema, self.supports_images = json_schema, images
        self.default_sampling = sampling
        self.backoff_s = backoff_s
        self._key: str | None = None
        if api_key_env is not None:
            self._key = os.environ.get(api_key_env) or None
            if self._key is None:  # name the variable, never a value
                raise ValueError(
                    f"api_key_env: environment variable {api_key_env} is not set "
                    "(set it, or use api_key_env: null for a server without a key)"
                )
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._pool: ThreadPoolExecutor | None = None
        self.stats: Counter[str] = Counter()  # "retry/<reason>", "failed/<reason>"; see above
        self._stats_lock = threading.Lock()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> OpenAIBackend:
        known = set(inspect.signature(cls).parameters) | {"backend"}
        check_keys("openai backend", params, known)
        require_keys("openai backend", params, known)
        kwargs = {k: params[k] for k in known if k != "backend"}
        kwargs["sampling"] = Sampling.from_params(params["sampling"], "openai backend.sampling")
        return cls(**kwargs)

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model_id!r}, url={self.url!r}, concurrency={self.concurrency})"

    def complete(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai")
        return list(self._pool.map(self._complete_one, requests))  # map keeps request order

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for session in self._sessions:
            session.close()
        self._sessions.clear()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            if self._key:
                session.headers["Authorization"] = f"Bearer {self._key}"
            self._sessions.append(session)
        return session

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        s = request.sampling
        body = {
            "model": self.model_id,
            "messages": openai_messages(request),
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }
        if request.choices:
            # one greedy token; temperature and top-p could reshape what some servers report
            body.update(max_tokens=1, temperature=0.0, top_p=1.0, logprobs=True)
            body["top_logprobs"] = self.choice_logprobs
        if self.send_schema and request.json_schema is not None:
            schema = {"name": "reply", "schema": dict(request.json_schema), "strict": True}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        return body

    def _complete_one(self, request: ChatRequest) -> Reply:
        reply = self._attempts(request)
        if not reply.ok:
            self._count(f"failed/{_stat_key(reply.error or '')}")
        return reply

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def prepare(self, request: ChatRequest) -> dict[str, Any] | Reply:
        """The request's JSON body, or the failed reply of a request that cannot be sent."""
        if request.images and not self.supports_images:
            return Reply.failed(f"model {self.model_id} takes no images (images: false)")
        try:
            return self._payload(request)
        except OSError as exc:  # an unreadable image fails this request, not the batch
            return Reply.failed(self._redact(f"cannot read image: {exc}"))

    def ray_batches(
        self,
        ray: Any,
        requests: Sequence[ChatRequest],
        batch_size: int,
        concurrency: int,
        servers: Sequence[str],
    ) -> Iterator[tuple[list[int], list[Reply], list[bytes]]]:
        """executor=ray: these requests through ray.data.llm's HTTP processor (ray_http.py)."""
        return ray_http.http_batches(
            ray, self, parse_reply, requests, batch_size, concurrency, servers
        )

    def headers(self) -> dict[str, str]:
        """The Authorization header, when there is a key (Ray's HTTP processor sends it)."""
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def _attempts(self, request: ChatRequest) -> Reply:
        body = self.prepare(request)
        if isinstance(body, Reply):
            return body
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(body, request.choices)
            except _Retryable as exc:
                failure = exc
            if attempt == self.max_retries:
                break
            self._count(f"retry/{failure.reason}")
            # exponential backoff; the jitter keeps a batch's retries from arriving in lockstep
            backoff = min(_MAX_SLEEP_S, self.backoff_s * 2**attempt) * random.uniform(0.5, 1)
            wait = backoff if failure.wait_s is None else min(_MAX_SLEEP_S, failure.wait_s)
            log.warning(
                "%s; retry %d/%d in %.2fs", failure.reason, attempt + 1, self.max_retries, wait
            )
            time.sleep(wait)
        reason = f"{failure.reason} after {self.max_retries + 1} attempts"
        log.warning("giving up: %s", reason)
        return Reply.failed(self._redact(reason))

    def _post(self, body: dict[str, Any], choices: tuple[str, ...]) -> Reply:
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._session().post(
                self.url, json=body, timeout=self.timeout_s, stream=True
            ) as response:
                if response.status_code in _RETRY_STATUS:  # the body does not matter
                    raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
                content = self._body(response, deadline)
        except (requests.Timeout, requests.ConnectionError) as exc:
            # a status line that times out arrives as a ConnectionError("Read timed out")
            if isinstance(exc, requests.Timeout) or "Read timed out" in str(exc):
                raise _Retryable(self._timeout()) from exc
            raise _Retryable(_connection_reason(exc)) from exc
        if response.status_code >= 400:  # a bad request stays bad: no retry
            text = content.decode(response.encoding or "utf-8", errors="replace")
            return Reply.failed(self._redact(f"HTTP {response.status_code}: {text[:200]}"))
        try:
            data = json.loads(content)
        except ValueError as exc:  # garbage, or JSON cut short: the server's fault, not the model's
            kind = response.headers.get("content-type", "no content-type")
            raise _Retryable(f"reply is not JSON (HTTP {response.status_code}, {kind})") from exc
        return parse_reply(data, choices)

    def _body(self, response: requests.Response, deadline: float) -> bytes:
        """The whole body, read as it arrives until `deadline`; a retryable failure when it is
        not all there by then or the connection breaks first."""
        raw, parts = response.raw, []
        conn = getattr(raw, "connection", None)
        sock: socket.socket | None = getattr(conn, "sock", None)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Retryable(self._timeout())
                if sock is not None:  # one read waits no longer than the time left
                    sock.settimeout(left)
                part = raw.read1(_READ_BYTES, decode_content=True)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as exc:
            raise _Retryable(self._timeout()) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # reset, short body, bad gzip
            raise _Retryable("connection closed in the middle of the reply") from exc

    def _timeout(self) -> str:
        return f"timeout ({self.timeout_s:g} s)"

    def _redact(self, text: str) -> str:
        """A server may echo the Authorization header back in an error body: never pass it on."""
        return text.replace(self._key, "***") if self._key else text


def parse_reply(data: Any, choices: Sequence[str]) -> Reply:
    """The reply in a chat completion's JSON (`data`, already parsed)."""
    if isinstance(data, dict) and data.get("choices") == []:
        return Reply.failed(EMPTY_CHOICES)
    if choices:
        return choice_reply(data, choices)
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return Reply.failed("reply has no choices[0].message.content")
    return Reply(text=text or "", finish_reason=choice.get("finish_reason") or "stop")


def choice_reply(data: Any, choices: Sequence[str]) -> Reply:
    """The reply to a choices request, from the first token's top_logprobs in a chat completion
    (`choices[0].logprobs.content[0].top_logprobs`, a list of {"token", "logprob"})."""
    try:
        first = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        empty = isinstance(data, dict) and data.get("choices") == []
        return Reply.failed(EMPTY_CHOICES if empty else "reply has no choices[0]")
    try:
        top = first["logprobs"]["content"][0]["top_logprobs"]
        candidates = [(str(t["token"]), float(t["logprob"])) for t in top]
    except (KeyError, IndexError, TypeError, ValueError):  # absent, null or malformed
        return Reply.failed(NO_LOGPROBS)
    if not candidates:  # we ask for at least one: an empty list means the field was ignored
        return Reply.failed(NO_LOGPROBS)
    matched = {c: best_token(candidates, c) for c in choices}
    shared = _sharing(matched)
    if shared:
        return Reply.failed(shared)
    return Reply.from_choice_probs({c: math.exp(m[1]) if m else 0.0 for c, m in matched.items()})


def token_text(token: str) -> str:
    """A returned token as the text it adds to the reply, less the space before a word."""
    text = token.lstrip()
    if text.startswith(_WORD_MARKERS):
        text = text[1:]
    return text


def best_token(candidates: Sequence[tuple[str, float]], choice: str) -> tuple[str, float] | None:
    """The returned (token, logprob) that best stands for the choice's first token: the longest
    whose text is the choice or begins it, the more probable on a tie; None when none does."""
    matches = [
        (token, logprob)
        for token, logprob in candidates
        if (text := token_text(token)) and choice.startswith(text)
    ]
    return max(matches, key=lambda m: (len(token_text(m[0])), m[1]), default=None)


def _sharing(matched: Mapping[str, tuple[str, float] | None]) -> str | None:
    """Why the probabilities mean nothing when two choices match one returned token (their
    first tokens are one token: "Yes" and "Yesterday"), else None."""
    seen: dict[tuple[str, float], str] = {}
    for choice, match in matched.items():
        if match is None:
            continue
        if match in seen:
            return f"choices {seen[match]!r} and {choice!r} both match the token {match[0]!r}"
        seen[match] = choice
    return None


def _retry_after(response: requests.Response) -> float | None:
    try:  # the seconds form only; an HTTP-date falls back to our own backoff
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _stat_key(error: str) -> str:
    """A failed reply's reason less its attempt count and its detail (an HTTP error's body, an
    image's path), so that the stats have a few keys."""
    key = re.sub(r" after \d+ attempts$", "", error)
    if re.match(r"HTTP \d+: |cannot read image: ", key):
        key = key.split(":")[0]
    return key


def _connection_reason(exc: requests.ConnectionError) -> str:
    # short and URL-free (a base_url may carry credentials); urllib3 hides the cause in the text
    text = str(exc)
    if "RemoteDisconnected" in text or "Connection aborted" in text or "reset" in text:
        return "connection closed without a reply"
    if "refused" in text.lower():
        return "connection refused"
    return f"connection error ({type(exc).__name__})"
