"""Check the vLLM backend on a GPU machine: a few real replies (text, image, JSON schema, a
broken image), then requests/s batched against one request at a time.

    pip install 'safeforge[gpu]'
    python benchmarks/vllm_check.py [--model Qwen/Qwen2-VL-2B-Instruct] [--n 64]

`--model` is a hub id (downloaded beforehand when the machine is offline) or a local folder.
Exits 1 when a reply that should be fine is an error or the schema reply is not JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

from safeforge.backends.base import ChatRequest, Reply, Sampling
from safeforge.backends.vllm import VLLMBackend
from safeforge.config import compose

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "samples" / "astronaut.png"  # 512x512: a few hundred image tokens
SCHEMA = {
    "type": "object",
    "properties": {"safe": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["safe", "reason"],
}


def ask(text: str, images: tuple[str, ...] = (), **kw) -> ChatRequest:
    system = {"role": "system", "content": "You are a careful, concise assistant."}
    return ChatRequest(messages=(system, {"role": "user", "content": text}), images=images, **kw)


def rate(backend: VLLMBackend, requests: list[ChatRequest], batched: bool) -> float:
    start = time.perf_counter()
    if batched:
        replies = backend.complete(requests)
    else:
        replies = [reply for r in requests for reply in backend.complete([r])]
    elapsed = time.perf_counter() - start
    failed = sum(not r.ok for r in replies)
    if failed:
        print(f"  ({failed} of {len(replies)} replies were errors)")
    return len(requests) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="Qwen/Qwen2-VL-2B-Instruct")
    parser.add_argument("--n", type=int, default=64, help="requests per throughput run")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        return check(args, Path(tmp))


def check(args: argparse.Namespace, tmp: Path) -> int:
    image = SAMPLE
    if not image.exists():  # data/samples is a pipeline output; make a picture instead
        image = tmp / "check.png"
        Image.new("RGB", (448, 448), (200, 30, 30)).save(image)

    start = time.perf_counter()
    params = compose(overrides=["generator=vllm"])["generator"]  # conf/generator/vllm.yaml
    params |= {
        "model": args.model,
        "max_model_len": args.max_model_len,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "sampling": {**params["sampling"], "max_tokens": args.max_tokens},
    }
    backend = VLLMBackend.from_params(params)
    print(f"loaded {args.model} in {time.perf_counter() - start:.1f}s")

    greedy = Sampling.from_params(params["sampling"], "generator.sampling")
    checks = {
        "text": ask("Give two safety rules for using a kitchen knife.", sampling=greedy),
        "image": ask("Describe this image in one sentence.", (str(image),), sampling=greedy),
        "json": ask(
            "Is it safe to leave a lit candle unattended? Answer as JSON with `safe` and `reason`.",
            sampling=greedy,
            json_schema=SCHEMA,
        ),
        "sampled": ask(
            "Suggest a name for a cat.",
            sampling=replace(greedy, max_tokens=32, temperature=0.8, seed=1),
        ),
        "broken image": ask("What is this?", (str(tmp / "missing.png"),), sampling=greedy),
    }
    replies: dict[str, Reply] = dict(
        zip(checks, backend.complete(list(checks.values())), strict=True)
    )
    ok = True
    for name, reply in replies.items():
        print(f"--- {name}: finish={reply.finish_reason} error={reply.error}\n{reply.text}")
        ok &= reply.ok == (name != "broken image")
    try:
        parsed = json.loads(replies["json"].text)
        print(f"JSON parsed: {parsed}; required keys: {set(SCHEMA['required']) <= set(parsed)}")
    except json.JSONDecodeError as exc:
        print(f"JSON did not parse: {exc}")
        ok = False

    prompts = [
        ask(f"In one sentence: why could household item {i} be dangerous?", sampling=greedy)
        for i in range(args.n)
    ]
    batch = rate(backend, prompts, batched=True)
    single = rate(backend, prompts[: max(4, args.n // 8)], batched=False)
    print(f"batched {batch:8.2f} req/s   one at a time {single:8.2f} req/s   x{batch / single:.1f}")
    backend.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
