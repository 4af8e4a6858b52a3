"""Cost of a fully cached rerun relative to the first run, for the row cache's two hot paths
(text embeddings and image perception), measured in one process on the bundled photos.

    python benchmarks/row_cache.py [--texts 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from safeforge.cache import RowCache
from safeforge.config import compose
from safeforge.embeddings.text import TextEncoder, encode_cached
from safeforge.perception.nsfw import NsfwModel, nsfw_cached
from safeforge.sources.skimage_samples import export


def timed(run, cache_dir: Path) -> float:
    start = time.perf_counter()
    run(RowCache("bench", cache_dir))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images_dir = Path(tmp) / "images"
        export(images_dir, min_images=1)
        paths = sorted(images_dir.glob("*.png"))
        images = pl.DataFrame(
            {"image_id": [p.stem for p in paths], "path": [str(p) for p in paths]}
        )
        texts = [
            f"Is it safe to leave item number {i} near the stove overnight?"
            for i in range(args.texts)
        ]
        encoder, nsfw = TextEncoder(), NsfwModel()
        encoder.encode(["warm-up"])  # model load is not part of either run
        nsfw.score_and_features([], 1)
        batch_size = compose()["describe"]["batch_size"]  # as the describe stage

        for name, run in [
            (f"text embeddings x{len(texts)}", lambda c: encode_cached(encoder, texts, c)),
            (
                f"nsfw + features x{images.height}",
                lambda c: nsfw_cached(images, nsfw, c, batch_size),
            ),
        ]:
            cache_dir = Path(tmp) / name.split()[0]
            first, again = timed(run, cache_dir), timed(run, cache_dir)
            print(
                f"{name:32s} first {first:7.3f}s  cached {again:7.3f}s  ratio {again / first:6.2%}"
            )


if __name__ == "__main__":
    main()
