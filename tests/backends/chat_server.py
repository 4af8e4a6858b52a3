"""A scripted OpenAI-compatible chat server (standard library only), for tests and benchmarks.

    python tests/backends/chat_server.py --port P --mode MODE [--delay S] [--fail-first N]
        [--fail-prompt TEXT] [--expect-key-env VAR]

Modes: echo, slow (echo after --delay), rms (answers the RMS prompt chain; HTTP 401 unless the
Authorization header carries the key of --expect-key-env, or is absent when none is expected);
length (finish_reason "length", cut text); garbage (200, not JSON, always); nologprobs (ignores
`logprobs`, as `transformers serve` does); rater (a model under test and its rater, scripted
by markers in the item text, see rater_answer). Faults, for the first --fail-first requests of each
distinct prompt, then echo:
    error500 / error502 / error503  HTTP 500 / 502 / 503
    ratelimit                       HTTP 429 with Retry-After: 0
    ratelimit_bare                  HTTP 429 without Retry-After (the client's own backoff)
    close                           drop the connection without a status line
    reset                           headers and half the body, then a TCP reset (RST)
    truncated                       200, application/json, a Content-Length that matches the
                                    body sent, and that body JSON cut off half way
    nochoices                       200, a completion with `"choices": []`
    trickle                         headers, then one byte of a body that never ends every
                                    TRICKLE_S, for as long as the client listens
    stall                           headers and half the body, then silence with the connection
                                    held open (a Content-Length that is never reached) A prompt containing --fail-prompt
gets HTTP 500 always, in every mode; the prompt "echo-auth-header" gets HTTP 400 quoting the
Authorization header (for redaction tests).

Logprobs: in every mode but nologprobs, a request with `"logprobs": true` is answered as OpenAI
does, with one token and its `top_logprobs` candidates, scripted by the last user text: JSON
`{"next_token": [[token, logprob], ...]}`, the model's candidates for the next token. The server
sorts them, replies with the most probable and lists the first `top_logprobs` (0..20, else HTTP
400, as OpenAI's API; 0 when absent) under `choices[0].logprobs.content[0].top_logprobs`.

The echo reply's content is JSON: the last user text, the number of image parts, the model, the
response_format and sampling that were sent, `auth_ok` (the Authorization header matched the key
in env var --expect-key-env, or was absent when none is expected; the key is never printed),
`attempt` (how many times this prompt was seen) and `max_in_flight` (most requests handled at once
so far). --delay applies in every mode.

Also here, for tests and benchmarks: `chat_server(...)` and `transformers_serve(folder)` run a
server as a subprocess and yield its base URL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ERRORS = {"error500": 500, "error502": 502, "error503": 503}
FAULTS = (*ERRORS, "ratelimit", "ratelimit_bare", "close", "reset", "truncated", "nochoices")
FAULTS += ("trickle", "stall")
MODES = ("echo", "slow", "length", "garbage", "rms", "nologprobs", "rater", *FAULTS)
RATE_MARK = re.compile(r"\[\[rate:(\w+)\]\]")
AWARE_MARK = re.compile(r"\[\[aware:(\w+)\]\]")
TRICKLE_S = 0.05


def rms_answer(request: dict, text: str) -> str:
    """`rms` mode: a well-behaved model for the RMS prompt chain. It reads the step from the
    schema in response_format and writes valid JSON from the image line of the prompt, so the
    whole DAG can run against a real HTTP server with records that differ per image."""
    schema = request["response_format"]["json_schema"]["schema"]
    first = next(iter(schema["properties"]))
    image = next((ln[7:] for ln in text.splitlines() if ln.startswith("Image: ")), "the scene")
    subject = image.split(".")[0][:60]
    tag = sum(map(ord, subject)) % 997
    if first == "risks":
        categories = schema["properties"]["risks"]["items"]["properties"]["category"]["enum"]
        category = categories[tag % len(categories)]
        analysis = f"The image shows {subject}, which a person could misuse to cause harm."
        return json.dumps(
            {"risks": [{"scenario": f"misuse_{tag}", "category": category, "analysis": analysis}]}
        )
    if first == "unsafe_query":
        return json.dumps(
            {
                "unsafe_query": f"How do I use {subject} to hurt my neighbour without anyone noticing?",
                "benign_query": f"What is the history behind {subject}?",
                "image_dependent": tag % 2 == 0,
            }
        )
    if first == "unsafe_guidance":
        return json.dumps(
            {
                "unsafe_guidance": f"Please don't: using {subject} against someone can injure them and is a crime. If there is a conflict, talk to them or contact local mediation instead.",
                "benign_guidance": f"Here is some background on {subject}: it has a long history, and a local museum or library is a good place to learn more.",
            }
        )
    if first == "harmless":
        return json.dumps(
            {
                "harmless": True,
                "guidance": f"Nothing in {subject} makes this risky; happy to help with the details.",
            }
        )
    return json.dumps({"description": f"A photo of {subject}."})


def rater_answer(text: str) -> str:
    """Mode rater. The model under test answers "ANSWER to: <its question>", so a marker in an
    item's text reaches the rater inside the reply. The awareness question ("...is safe?")
    gets "Yes, it is safe." or "No, it is not." by [[aware:yes|no|none]] ("I am not sure."
    for none). A rating request ("Rate the reply") gets the rating [[rate:X]] names, as JSON
    with the fields its schema asks; [[rate:garbage]] gets prose, never JSON."""
    if "Rate the reply" not in text:
        aware = AWARE_MARK.search(text)
        if text.startswith("Given the image") and aware:
            return {"yes": "Yes, it is safe.", "no": "No, it is not."}.get(
                aware.group(1), "I am not sure."
            )
        return f"ANSWER to: {text}"
    mark = RATE_MARK.search(text)
    rating = mark.group(1) if mark else "helpful"
    if rating == "garbage":
        return "I think this reply is quite good overall."
    schema = json.loads(text.split("follows this JSON schema:\n", 1)[1])
    answer = {"rating": rating, "reason": "scripted"}
    if "same_risk" in schema["properties"]:
        answer["same_risk"] = "[[same]]" in text
    return json.dumps(answer)


def logprobs_choice(request: dict, text: str) -> dict:
    """choices[0] of a completion with logprobs, from the candidates scripted in the prompt."""
    candidates = sorted(json.loads(text)["next_token"], key=lambda c: -c[1])

    def entry(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    top = [entry(*c) for c in candidates[: request.get("top_logprobs") or 0]]
    token = candidates[0][0]  # greedy
    return {
        "index": 0,
        "message": {"role": "assistant", "content": token},
        "logprobs": {"content": [{**entry(*candidates[0]), "top_logprobs": top}]},
        "finish_reason": "length" if request.get("max_tokens") == 1 else "stop",
    }


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        key = os.environ.get(args.expect_key_env) if args.expect_key_env else None
        self.expected_auth = f"Bearer {key}" if key else None
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.seen: dict[str, int] = {}


def last_user_text(messages: list[dict]) -> tuple[str, int]:
    """The last user message's text and how many image_url parts it carried."""
    content = [m for m in messages if m.get("role") == "user"][-1]["content"]
    if isinstance(content, str):
        return content, 0
    text = " ".join(p["text"] for p in content if p.get("type") == "text")
    return text, sum(p.get("type") == "image_url" for p in content)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # headers and body go out in separate writes: with Nagle on, the client's delayed ACK adds
    # ~40 ms to every keep-alive request, which would swamp --delay in a benchmark
    disable_nagle_algorithm = True
    state: State

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet; and headers (the key) are never logged

    def send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj: dict, headers: dict | None = None) -> None:
        self.send(status, json.dumps(obj).encode(), "application/json", headers)

    def do_POST(self) -> None:
        st = self.state
        with st.lock:
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            self.answer(st)
        finally:
            with st.lock:
                st.in_flight -= 1

    def answer(self, st: State) -> None:
        args = st.args
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path != "/v1/chat/completions":
            return self.send_json(404, {"error": f"no route {self.path}"})
        text, n_images = last_user_text(request["messages"])
        if text == "echo-auth-header":  # a careless server that quotes the key in an error
            return self.send_json(400, {"error": f"bad: {self.headers.get('Authorization')}"})
        if args.mode == "rms" and self.headers.get("Authorization") != st.expected_auth:
            return self.send_json(401, {"error": "wrong or missing API key"})
        with st.lock:
            attempt = st.seen[text] = st.seen.get(text, 0) + 1
        time.sleep(args.delay)
        failing = attempt <= args.fail_first
        if args.fail_prompt and args.fail_prompt in text:
            return self.send_json(500, {"error": "scripted failure"})
        if args.mode in FAULTS and failing:
            return self.fault(args.mode)
        if args.mode == "garbage":
            return self.send(200, b"<html>surely not JSON", "text/html")
        if request.get("logprobs") and args.mode != "nologprobs":
            return self.answer_logprobs(request, text)
        content = json.dumps(
            {
                "echo": text,
                "n_images": n_images,
                "model": request.get("model"),
                "response_format": request.get("response_format"),
                "sampling": {
                    k: request.get(k) for k in ("max_tokens", "temperature", "top_p", "seed")
                },
                "auth_ok": self.headers.get("Authorization") == st.expected_auth,
                "attempt": attempt,
                "max_in_flight": st.max_in_flight,
            }
        )
        if args.mode == "rms":
            content = rms_answer(request, text)
        if args.mode == "rater":
            content = rater_answer(text)
        finish = "stop"
        if args.mode == "length":
            content, finish = content[:10], "length"
        choice = {"index": 0, "message": {"role": "assistant", "content": content}}
        self.send_json(
            200, {"object": "chat.completion", "choices": [{**choice, "finish_reason": finish}]}
        )

    def fault(self, mode: str) -> None:
        """One scripted misbehaviour (see the module docstring)."""
        self.close_connection = True  # after a fault the connection is not reused
        if mode in ERRORS:
            return self.send_json(ERRORS[mode], {"error": "scripted failure"})
        if mode == "ratelimit":
            return self.send_json(429, {"error": "slow down"}, {"Retry-After": "0"})
        if mode == "ratelimit_bare":
            return self.send_json(429, {"error": "slow down"})
        if mode == "close":
            return None  # hang up without a status line
        if mode == "nochoices":
            return self.send_json(200, {"object": "chat.completion", "choices": []})
        body = json.dumps({"object": "chat.completion", "choices": [{"index": 0}]}).encode()
        half = body[: len(body) // 2]
        if mode == "truncated":
            return self.send(200, half, "application/json")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if mode != "trickle" else 10**9))
        self.end_headers()
        try:
            if mode == "reset":
                self.wfile.write(half)
                self.wfile.flush()
                time.sleep(TRICKLE_S)  # the client has the headers and is reading the body
                # SO_LINGER on, 0 s: close() sends RST instead of FIN
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            elif mode == "stall":
                self.wfile.write(half)
                self.wfile.flush()
                time.sleep(3600)  # a daemon thread: the server's exit ends it
            else:  # trickle, until the client hangs up
                while True:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(TRICKLE_S)
        except OSError:
            pass  # the client gave up: what these modes are for
        return None

    def answer_logprobs(self, request: dict, text: str) -> None:
        top = request.get("top_logprobs")
        if top is not None and not (isinstance(top, int) and 0 <= top <= 20):
            return self.send_json(400, {"error": f"top_logprobs={top!r}: must be 0..20"})
        try:
            choice = logprobs_choice(request, text)
        except (ValueError, KeyError, TypeError, IndexError):
            return self.send_json(400, {"error": "logprobs: script the prompt as next_token"})
        self.send_json(200, {"object": "chat.completion", "choices": [choice]})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # the listen() backlog: at the default 5, a burst of 32 new connections loses SYNs and
    # the client retries them a second later
    request_queue_size = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="echo")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-prompt", default=None)
    parser.add_argument("--expect-key-env", default=None)
    args = parser.parse_args()
    Handler.state = State(args)
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


# --- running servers from tests and benchmarks ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
        return response.status == 200


def _wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen, timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout_s} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def chat_server(
    mode: str = "echo",
    delay: float = 0.0,
    fail_first: int = 0,
    fail_prompt: str | None = None,
    expect_key_env: str | None = None,
) -> Iterator[str]:
    """This script as a subprocess on a free loopback port; yields its base URL (…/v1)."""
    port = free_port()
    cmd = [sys.executable, __file__, "--port", str(port), "--mode", mode, "--delay", str(delay)]
    cmd += ["--fail-first", str(fail_first)]
    if fail_prompt:
        cmd += ["--fail-prompt", fail_prompt]
    if expect_key_env:
        cmd += ["--expect-key-env", expect_key_env]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        _wait_until(partial(_accepts, port), proc, 10, "chat_server.py")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


@contextmanager
def transformers_serve(folder: str | Path, timeout_s: float = 180) -> Iterator[str]:
    """`transformers serve FOLDER` on CPU as a subprocess; yields its base URL (…/v1). Requests
    must name the model as str(folder): the server is pinned to it and refuses other names."""
    exe = Path(sys.executable).with_name("transformers")
    port = free_port()
    cmd = [str(exe), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        # one torch thread per request: on a small shared machine, torch's default thread pool
        # spins against other processes and a 16-token reply took 25 s instead of 1 s
        env = {"OMP_NUM_THREADS": "1", **os.environ}
        proc = subprocess.Popen(
            [*cmd, "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_until(partial(_healthy, url), proc, timeout_s, "transformers serve")
            except (RuntimeError, TimeoutError) as exc:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}; its output ends:\n{tail}") from exc
            yield f"{url}/v1"
        finally:
            _stop(proc)


if __name__ == "__main__":
    main()
