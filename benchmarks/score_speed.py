"""Items per second when the probe judge scores a benchmark read natively (SIUO layout: one
question per image, the images distinct crops of the scikit-image photos), cold and with the
row cache warm, with and without OCR. Ratios are against the cold run with OCR, same process.

    python benchmarks/score_speed.py [--items 200] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from safeforge.benchmarks.base import load_benchmark
from safeforge.config import compose
from safeforge.judges.probe import ProbeJudge
from safeforge.scoring.benchmark import score_benchmark
from safeforge.sources.skimage_samples import export


def siuo_folder(root: Path, n_items: int) -> None:
    """n_items questions, each with its own image: a distinct crop of a bundled photo."""
    photos_dir = root / "photos"
    export(photos_dir, min_images=1)
    photos = sorted(photos_dir.glob("*.png"))
    images = root / "data" / "images"
    images.mkdir(parents=True)
    for i in range(n_items):
        with Image.open(photos[i % len(photos)]) as photo:
            shift = 4 * (i // len(photos))
            photo.crop((shift, shift, photo.width - 1, photo.height - 1)).save(images / f"{i}.png")
    records = [
        {
            "question_id": i,
            "image": f"{i}.png",
            "question": f"Is it fine to leave this next to the heater for {i} hours?",
            "category": "dangerous behavior",
        }
        for i in range(n_items)
    ]
    (root / "data" / "siuo_gen.json").write_text(json.dumps(records))


def random_probe() -> ProbeJudge:
    rng = np.random.default_rng(0)
    n = 64
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    frame = pl.DataFrame(
        {
            "image_emb": rng.random((n, 1024), dtype=np.float32),
            "description_emb": unit(rng.normal(size=(n, 384)).astype(np.float32)),
            "query_emb": unit(rng.normal(size=(n, 384)).astype(np.float32)),
            "label": ["safe", "unsafe"] * (n // 2),
            "category": ["physical_injury"] * n,
        }
    )
    probe = compose(overrides=["judge=probe"])["judge"]
    probe.pop("kind")
    return ProbeJudge.fit(frame[:48], frame[48:], {**probe, "epochs": 2})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    conf = compose()
    spec, taxonomy = conf["benchmarks"]["siuo"], conf["taxonomy"]["categories"]
    judge = random_probe()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "siuo"
        siuo_folder(root, args.items)
        table = load_benchmark("siuo", spec, root=root, taxonomy=taxonomy)
        n_images = table.items["image_path"].n_unique()
        print(f"{table.items.height} items over {n_images} images, batch {args.batch_size}")
        # model loading is excluded: one tiny warm-up run against a throwaway cache
        os.environ["SAFEFORGE_CACHE_DIR"] = str(Path(tmp) / "warmup")
        warmup = dataclasses.replace(table, items=table.items.head(2))
        score_benchmark(judge, warmup, spec, 0.5, args.batch_size, 0.6)
        baseline = None
        for ocr in (0.6, None):
            os.environ["SAFEFORGE_CACHE_DIR"] = str(Path(tmp) / f"cache-ocr-{ocr}")
            for run in ("cold", "warm"):
                start = time.perf_counter()
                score_benchmark(judge, table, spec, 0.5, args.batch_size, ocr)
                seconds = time.perf_counter() - start
                baseline = baseline or seconds
                print(
                    f"ocr {'on ' if ocr else 'off'} {run}: {seconds:7.2f}s  "
                    f"{table.items.height / seconds:8.1f} items/s  "
                    f"time vs cold+ocr {seconds / baseline:6.1%}"
                )


if __name__ == "__main__":
    main()
