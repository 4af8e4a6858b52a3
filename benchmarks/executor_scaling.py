"""Executor scaling: describe's and embed's model work on N images, executor=local against Ray
with 1 and 2 actors, in one process, as ratios to local; and Ray's fixed start-up cost.

    python benchmarks/executor_scaling.py [--images 2000] [--workers 1 2] [--side 320]

Images: scikit-image's bundled photos (the DAG's sample images), each cut into distinct crops resized to
`--side` pixels, so every image is a new row-cache key. Each configuration starts from an empty
row cache. describe = OCR (RapidOCR) + NSFW score and pooled features (open_nsfw); embed = the
per-image features (pHash, thumbnail, sharpness) + MiniLM embeddings of two texts per image.
Ray runs here with `num_cpus` = this machine's cores; its start (`ray.init`) is timed apart, the
actors' start (model loads included) is inside each configuration's time, as in a stage.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
from PIL import Image

from safeforge.cache import LocalExecutor, RowCache
from safeforge.config import compose
from safeforge.embeddings.images import image_features_cached
from safeforge.embeddings.text import TextEncoder, encode_cached
from safeforge.executors import make_executor
from safeforge.perception.nsfw import NsfwModel, nsfw_cached
from safeforge.perception.ocr import OcrReader, ocr_cached
from safeforge.sources.skimage_samples import export


def make_images(n: int, side: int, folder: Path) -> pl.DataFrame:
    """`n` distinct images: crops of the sample photos at shifting offsets and scales."""
    originals = folder / "originals"
    photos = [
        Image.open(originals / s.file).convert("RGB") for s in export(originals, min_images=1)
    ]
    rows = []
    for k in range(n):
        photo = photos[k % len(photos)]
        w, h = photo.size
        scale = 0.55 + 0.4 * ((k // len(photos)) % 10) / 10
        cw, ch = max(16, int(w * scale)), max(16, int(h * scale))
        x = (k * 7) % max(1, w - cw + 1)
        y = (k * 13) % max(1, h - ch + 1)
        image = photo.crop((x, y, x + cw, y + ch)).resize((side, side * ch // cw or 1))
        path = folder / f"{k:05d}.png"
        image.save(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append({"image_id": digest, "path": str(path), "pixel_sha256": digest,
                     "width": image.width, "height": image.height})  # fmt: skip
    return pl.DataFrame(rows).unique("image_id", keep="first", maintain_order=True)


def describe_work(images: pl.DataFrame, cache: RowCache, params: dict) -> None:
    describe = params["describe"]
    ocr_cached(images, OcrReader(describe["ocr_min_confidence"]), cache)
    nsfw_cached(images, NsfwModel(), cache, describe["batch_size"])


def embed_work(images: pl.DataFrame, cache: RowCache, params: dict) -> None:
    image_features_cached(images, cache)
    texts = [f"{t} {i}" for i in range(images.height) for t in ("what is in photo", "is it safe")]
    encode_cached(TextEncoder(), texts, cache, params["embed"]["batch_size"])


def timed(work: Callable, images: pl.DataFrame, executor, params: dict) -> float:
    cache = RowCache("bench", tempfile.mkdtemp(prefix="rows-"), executor=executor)
    started = time.perf_counter()
    work(images, cache, params)
    seconds = time.perf_counter() - started
    assert cache.stats()["cache_misses"] > 0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", type=int, default=320)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    params = compose()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        images = make_images(args.images, args.side, Path(folder))
        print(f"{images.height} images, {args.side} px wide; {cores} cores")
        executors = {"local": LocalExecutor()}
        overrides = ["executor=ray", f"executor.local.num_cpus={cores}"]
        ray_section = compose(overrides=overrides)["executor"]
        import ray  # timed apart: the fixed cost of a stage that has misses

        started = time.perf_counter()
        make_executor(ray_section).start()
        startup = time.perf_counter() - started
        for n in args.workers:
            executors[f"ray x{n}"] = make_executor({**ray_section, "concurrency": n})
        results: dict[str, dict[str, float]] = {}
        for name, executor in executors.items():
            results[name] = {
                stage: timed(work, images, executor, params)
                for stage, work in (("describe", describe_work), ("embed", embed_work))
            }
        ray.shutdown()
    print(f"Ray start-up (ray.init, local, {cores} CPUs): {startup:.1f} s")
    print(f"{'executor':<10} {'describe s':>11} {'ratio':>6} {'embed s':>9} {'ratio':>6}")
    base = results["local"]
    for name, r in results.items():
        print(
            f"{name:<10} {r['describe']:>11.1f} {base['describe'] / r['describe']:>6.2f}"
            f" {r['embed']:>9.1f} {base['embed'] / r['embed']:>6.2f}"
        )
    print("ratio: local seconds / these seconds (above 1: faster than local)")


if __name__ == "__main__":
    main()
