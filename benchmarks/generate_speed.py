"""The hf backend and the RMS chain on this machine: requests/s batched vs one at a time, and
the cost of a fully cached rerun of the chain relative to its first run. Same process, same
model (the packaged SmolLM2-135M-Instruct), ratios against the baseline printed beside each.

    python benchmarks/generate_speed.py [--requests 16] [--images 6] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from safeforge.backends import ChatRequest, Sampling, make_backend
from safeforge.cache import RowCache
from safeforge.chain.chat import Chat, Prompts
from safeforge.config import compose
from safeforge.generate.rms import write_records
from safeforge.sources.skimage_samples import export


def hf_params() -> dict:
    """conf/generator/hf.yaml (SmolLM2, batches of 8), composed."""
    return compose(overrides=["generator=hf"])["generator"]


def short(max_tokens: int) -> Sampling:
    return replace(
        Sampling.from_params(hf_params()["sampling"], "generator.sampling"), max_tokens=max_tokens
    )


def batching(n_requests: int, max_tokens: int) -> None:
    backend = make_backend(hf_params())
    topics = ["a kitchen knife", "a cup of coffee", "a rocket", "a cat", "a ladder", "a car"]
    requests = [
        ChatRequest(
            ({"role": "user", "content": f"List two safety tips about {topics[i % 6]} ({i})."},),
            sampling=short(max_tokens),
        )
        for i in range(n_requests)
    ]
    backend.complete(requests[:1])  # load and warm up outside the timings
    start = time.perf_counter()
    for r in requests:
        backend.complete([r])
    one = time.perf_counter() - start
    start = time.perf_counter()
    backend.complete(requests)
    batched = time.perf_counter() - start
    print(f"hf SmolLM2, {n_requests} requests, {max_tokens} new tokens at most")
    print(f"  one at a time : {one:7.2f}s  {n_requests / one:6.2f} requests/s  x1.00")
    print(
        f"  batched (8)   : {batched:7.2f}s  {n_requests / batched:6.2f} requests/s  x{one / batched:.2f}"
    )


def cached_rerun(n_images: int, max_tokens: int, workdir: Path) -> None:
    config = compose()
    prompts = Prompts.from_params(config["prompts"])
    rows = export(workdir / "images", min_images=1)[:n_images]
    images = [
        {
            "image_id": f"{i:064x}",
            "path": str(workdir / "images" / r.file),
            "caption": r.caption,
            "description": r.caption,
        }
        for i, r in enumerate(rows)
    ]
    times = []
    for _ in range(2):  # a new backend each run, as a new `dvc repro` process would have
        start = time.perf_counter()
        backend = make_backend(hf_params())
        chat = Chat(
            backend,
            prompts,
            RowCache("bench", workdir / "cache"),
            short(max_tokens),
            config["generate"]["batch_size"],
        )
        result = write_records(images, chat, config["taxonomy"]["categories"], 3, True, "smollm2")
        times.append(time.perf_counter() - start)
    print(f"RMS chain on {n_images} images, hf SmolLM2, {chat.requests} requests per run")
    print(f"  first run          : {times[0]:7.2f}s  x1.000")
    print(
        f"  fully cached rerun : {times[1]:7.3f}s  {100 * times[1] / times[0]:.3f}% of the first run"
    )
    print(
        f"  records {result.records.height}, dropped images {len(result.dropped)}: {sorted(set(result.dropped.values()))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SAFEFORGE_CACHE_DIR", str(Path(tmp) / "models"))
        batching(args.requests, args.max_tokens)
        cached_rerun(args.images, args.max_tokens, Path(tmp))


if __name__ == "__main__":
    main()
