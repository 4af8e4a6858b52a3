"""Check executor=ray with the vLLM backend on a GPU machine: the replies Ray's actors give
(one engine per actor, `num_gpus` 1 each) against one local engine's, and requests/s of both.

    pip install 'safeforge[gpu,ray]'
    python benchmarks/ray_vllm_check.py [--model Qwen/Qwen2-VL-2B-Instruct] [--n 128] [--gpus 1]

Greedy sampling, so the two must agree reply for reply (a choices request too, by probability
to 1e-3). Each side has its own empty row cache. Exits 1 on a disagreement or an error reply.
`--model`: a hub id downloaded beforehand (the machine may be offline) or a local folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import ray

from safeforge.backends.base import ChatRequest, Sampling
from safeforge.backends.cached import cached_complete
from safeforge.backends.vllm import VLLMBackend
from safeforge.cache import LocalExecutor, RowCache
from safeforge.config import compose
from safeforge.executors import make_executor


def requests(n: int, sampling: Sampling) -> list[ChatRequest]:
    asks = [
        ChatRequest(
            messages=(
                {"role": "user", "content": f"In one sentence: is it safe to {what}? ({i})"},
            ),
            sampling=sampling,
        )
        for i, what in enumerate(["run a car in a closed garage", "sit in a sauna"] * (n // 2))
    ]
    yes_no = {"role": "user", "content": "Is leaving a stove on overnight safe? Yes or No."}
    return [*asks, ChatRequest(messages=(yes_no,), sampling=sampling, choices=("Yes", "No"))]


def timed(backend: VLLMBackend, executor, batch: list[ChatRequest], batch_size: int):
    cache = RowCache("check", tempfile.mkdtemp(prefix="rows-"), executor=executor)
    started = time.perf_counter()
    replies = cached_complete(backend, cache, batch, batch_size, executor.name)
    return replies, len(batch) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="Qwen/Qwen2-VL-2B-Instruct")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--gpus", type=int, default=1, help="actors, one GPU each")
    args = parser.parse_args()
    params = compose(overrides=["generator=vllm"])["generator"]
    params |= {"model": args.model, "sampling": {**params["sampling"], "max_tokens": 64}}
    backend = VLLMBackend.from_params(params)
    batch = requests(args.n, backend.default_sampling)

    local, local_rate = timed(backend, LocalExecutor(), batch, params["batch_size"])
    backend.close()  # free the GPU for the actors
    section = compose(overrides=["executor=ray"])["executor"]
    executor = make_executor({**section, "concurrency": args.gpus, "num_gpus": 1})
    remote, ray_rate = timed(backend, executor, batch, params["batch_size"])
    ray.shutdown()

    bad = [i for i, (a, b) in enumerate(zip(local, remote, strict=True)) if not (a.ok and b.ok)]
    differ = [i for i, (a, b) in enumerate(zip(local[:-1], remote[:-1], strict=True))
              if a.text != b.text]  # fmt: skip
    p_local, p_ray = local[-1].choice_probs or {}, remote[-1].choice_probs or {}
    if any(abs(p_local.get(c, -1) - p_ray.get(c, -2)) > 1e-3 for c in ("Yes", "No")):
        differ.append(len(batch) - 1)
    print(f"local: {local_rate:.1f} requests/s; ray x{args.gpus}: {ray_rate:.1f} requests/s")
    print(f"error replies: {bad or 'none'}; replies that differ: {differ or 'none'}")
    return 1 if bad or differ else 0


if __name__ == "__main__":
    sys.exit(main())
