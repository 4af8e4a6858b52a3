"""Image dedup on a corpus with known duplicate clusters (benchmarks/dedup_corpus.py): pairwise
precision and recall, recall per transform, for pHash alone and pHash + semantic embedding at
several thresholds; then hashing and search throughput against imagededup's PHash on the same
files in the same run (the corpus, and --camera 12-megapixel JPEGs), and imagededup's own
precision/recall at the default distance. The baseline: `make bench-setup`.

    python benchmarks/dedup_images.py [--n 2000] [--phash 4,8,10,12,14] [--cosine 0.95,0.98]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from dedup_corpus import TRANSFORMS, build_corpus
from PIL import Image

from safeforge.config import compose
from safeforge.dedup.clusters import clusters
from safeforge.dedup.images import image_clusters
from safeforge.embeddings.images import image_file_features
from safeforge.images.ingest import pixel_sha256
from safeforge.images.load import load_rgb

DEFAULT_PHASH, DEFAULT_COSINE = (
    compose()["dedup"][k] for k in ("phash_max_distance", "semantic_min_cosine")
)
# the torchvision modules imagededup imports (imagededup/utils/models.py)
TORCHVISION_MODULES = ("torchvision", "torchvision.models", "torchvision.transforms")
TORCHVISION_MODULES += ("torchvision.models.vision_transformer",)
GOALS = {"resize": 0.95, "jpeg": 0.95, "crop": 0.9, "brightness": 0.9}  # recall; precision 0.99


class _Placeholder(types.ModuleType):
    """A module whose every public attribute is a callable placeholder returning itself."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # __file__, __path__...: introspection must see a plain module
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self


def import_imagededup_phash() -> type:
    """imagededup's PHash class, importable without torchvision.

    imagededup's package imports its CNN models, which import torchvision at module level. The
    only torchvision wheel on this project's registry is CUDA-linked and fails to load against
    the CPU torch in .venv, so it is not installed. Only the hashing path is used here, which
    never touches torchvision: placeholder modules stand in for it so the imports succeed.
    """
    for name in TORCHVISION_MODULES:
        sys.modules.setdefault(name, _Placeholder(name))
    try:
        from imagededup.methods import PHash
    except ModuleNotFoundError as e:
        raise SystemExit(f"{e}: install the baseline with `make bench-setup`") from e
    for name in list(logging.root.manager.loggerDict):  # its loggers print INFO lines to stderr
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", "Parameter num_enc_workers has no effect")
    return PHash


def n_pairs(frame: pl.DataFrame, *keys: str) -> int:
    sizes = frame.group_by(*keys).len()["len"].cast(pl.Int64)
    return int((sizes * (sizes - 1) // 2).sum())


def score(corpus: pl.DataFrame, pred: list[str]) -> tuple[dict[str, float], pl.DataFrame]:
    """Pairwise precision/recall of predicted clusters vs bases (precision also without the noise
    distractors); recall per transform, a copy being found when it shares its original's cluster.
    """
    frame = corpus.with_columns(pred=pl.Series(pred))
    tp = n_pairs(frame, "pred", "base")
    out = {"precision": tp / max(1, n_pairs(frame, "pred")), "recall": tp / n_pairs(frame, "base")}
    clean = frame.filter(~pl.col("base").str.starts_with("noise"))
    out["prec_no_noise"] = n_pairs(clean, "pred", "base") / max(1, n_pairs(clean, "pred"))
    originals = frame.filter(pl.col("transform") == "original").select("base", orig="pred")
    copies = frame.join(originals, on="base").filter(pl.col("transform") != "original")
    found = copies.with_columns(found=pl.col("pred") == pl.col("orig"))
    recall = dict(found.group_by("transform").agg(pl.col("found").mean()).iter_rows())
    return out | {t: recall[t] for t in TRANSFORMS if t in recall}, found


def goals(s: dict[str, float]) -> list[str]:
    """The issue's goals, each as "name value>=goal PASS|FAIL"."""
    checks = [("precision", 0.99), *GOALS.items()]
    return [f"{k} {s[k]:.3f}>={g} {'PASS' if s[k] >= g else 'FAIL'}" for k, g in checks]


def false_merges(corpus: pl.DataFrame, pred: list[str]) -> str:
    """How many predicted clusters hold more than one base, and those bases by family."""
    family = pl.col("base").str.extract(r"^(\D+)")
    frame = corpus.with_columns(pred=pl.Series(pred), family=family)
    merged = frame.unique(["pred", "base"]).group_by("pred").agg("family")
    merged = merged.filter(pl.col("family").list.len() > 1)
    counts = merged.explode("family")["family"].value_counts(sort=True).rows()
    if not counts:
        return "none"
    return f"{merged.height} clusters, their bases: " + ", ".join(f"{f} {n}" for f, n in counts)


def our_features(paths: list[str]) -> tuple[pl.DataFrame, float]:
    """What embed computes per image (timed), next to what ingest already has (not timed)."""
    start = time.perf_counter()
    feats = [image_file_features(p) for p in paths]
    elapsed = time.perf_counter() - start
    images = [load_rgb(p) for p in paths]
    ingested = pl.DataFrame(
        {
            "image_id": [Path(p).stem for p in paths],
            "pixel_sha256": [pixel_sha256(np.asarray(im)) for im in images],
            "width": [im.width for im in images],
            "height": [im.height for im in images],
        }
    )
    return pl.concat([ingested, pl.DataFrame(feats)], how="horizontal"), elapsed


def semantic(paths: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    from safeforge.perception.nsfw import NsfwModel

    model = NsfwModel()
    model.score_and_features([load_rgb(paths[0])], 1)  # session load is not part of the timing
    start, chunks = time.perf_counter(), []
    for i in range(0, len(paths), 256):
        images = [load_rgb(p) for p in paths[i : i + 256]]
        chunks.append(model.score_and_features(images, batch_size=batch_size)[1])
    return np.concatenate(chunks), time.perf_counter() - start


def quality(
    corpus: pl.DataFrame, frame: pl.DataFrame, phash: list[int], cosine: list[float]
) -> None:
    table, kept = [], {}
    for d in phash:
        for c in [None, *cosine]:
            out = image_clusters(frame, phash_max_distance=d, semantic_min_cosine=c)
            pred = frame.select("image_id").join(out, on="image_id", how="left")["image_cluster"]
            kept[(d, c)] = *score(corpus, pred.to_list()), pred.to_list()
            all_pass = all(g.endswith("PASS") for g in goals(kept[(d, c)][0]))
            table.append({"phash": d, "cosine": c, **kept[(d, c)][0], "all_goals": all_pass})
    with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=3, tbl_width_chars=160):
        print(pl.DataFrame(table))
    for (d, c), (s, found, pred) in kept.items():
        if d != DEFAULT_PHASH or c not in (None, DEFAULT_COSINE):
            continue
        print(f"goals, phash {d}" + (f" + cosine {c}: " if c else " alone: ") + ", ".join(goals(s)))
        missed = found.group_by("transform", "param").agg(
            missed=(~pl.col("found")).sum(), of=pl.len()
        )
        worst = missed.filter(pl.col("missed") > 0).sort("missed", descending=True).head(8)
        print("  missed most: " + ", ".join(f"{t} {p}: {m}/{o}" for t, p, m, o in worst.rows()))
        print(f"  merging distinct bases: {false_merges(corpus, pred)}")


def hashing_rates(image_dir: Path, paths: list[str], label: str) -> tuple[Any, dict]:
    """Images/s of our per-image features and of imagededup's PHash on the same files."""
    PHash = import_imagededup_phash()
    hasher, cpus, n = PHash(verbose=False), os.cpu_count(), len(paths)
    start = time.perf_counter()
    for p in paths:
        image_file_features(p)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    encodings = hasher.encode_images(image_dir=str(image_dir), num_enc_workers=1)
    t_enc1 = time.perf_counter() - start
    start = time.perf_counter()
    hasher.encode_images(image_dir=str(image_dir))  # its default: cpu_count() worker processes
    t_enc = time.perf_counter() - start
    print(f"hashing {n} {label} (x: speed relative to imagededup with 1 worker)")
    for name, t in [
        ("ours image_file_features (pHash, size, sharpness, contrast), 1 process", t_ours),
        ("imagededup PHash.encode_images, num_enc_workers=1 (1 pool process)", t_enc1),
        (f"imagededup PHash.encode_images, default ({cpus} pool processes)", t_enc),
    ]:
        print(f"  {name:72s} {n / t:8.1f} images/s  x{t_enc1 / t:.2f}")
    return hasher, encodings


def search_rates(corpus: pl.DataFrame, ours: pl.DataFrame, hasher: Any, encodings: dict) -> None:
    """Near-pair search at the default distance, ours against imagededup's, and imagededup's
    own precision/recall there."""
    n, d = corpus.height, DEFAULT_PHASH
    t_search = {}
    for workers in sorted({1, os.cpu_count() or 1}):
        start = time.perf_counter()
        dups = hasher.find_duplicates(
            encoding_map=encodings, max_distance_threshold=d, num_dist_workers=workers
        )
        t_search[workers] = time.perf_counter() - start
    start = time.perf_counter()
    image_clusters(ours, phash_max_distance=d, semantic_min_cosine=None)
    rows = [(f"ours image_clusters, phash {d}, semantic off", time.perf_counter() - start)]
    rows += [(f"imagededup find_duplicates, num_dist_workers={w}", t) for w, t in t_search.items()]
    print(f"search at distance {d} over {n} hashes (x: speed relative to imagededup, 1 worker)")
    for name, t in rows:
        print(f"  {name:72s} {n / t:8.1f} images/s  x{t_search[1] / t:.2f}")
    names = [Path(p).name for p in corpus["path"]]
    index = {name: i for i, name in enumerate(names)}
    pairs = [(index[a], index[b]) for a, bs in dups.items() for b in bs if index[a] < index[b]]
    s, _ = score(corpus, [clusters(names, pairs)[x] for x in names])
    per = ", ".join(f"{k} {v:.3f}" for k, v in s.items())
    print(f"imagededup PHash at {d} (pairs joined into clusters, scored like ours): {per}")


def camera_photos(corpus: pl.DataFrame, out_dir: Path, n: int) -> list[str]:
    """`n` of the corpus originals upscaled to 12 megapixels and saved as JPEG q90: the size
    and format of the photos users bring, where the decode dominates the hashing."""
    out_dir.mkdir(parents=True)
    paths = []
    originals = corpus.filter(pl.col("transform") == "original")["path"].head(n)
    for i, src in enumerate(originals):
        with Image.open(src) as img:
            big = img.convert("RGB").resize((4000, 3000), Image.Resampling.BILINEAR)
        paths.append(str(out_dir / f"camera{i:04d}.jpg"))
        big.save(paths[-1], quality=90)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="about this many images")
    parser.add_argument("--camera", type=int, default=100, help="12 MP JPEGs to hash as well")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="corpus folder (default: a tmpdir)")
    parser.add_argument("--phash", default="4,8,10,12,14", help="pHash max distances to score")
    parser.add_argument("--cosine", default="0.95,0.98", help="semantic min cosines to score")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.out and args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty: imagededup hashes every file in the folder")
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = args.out or Path(tmp) / "corpus"
        start = time.perf_counter()
        corpus = build_corpus(image_dir, args.n, args.seed)
        took = time.perf_counter() - start
        print(f"corpus: {corpus.height} images, {corpus['base'].n_unique()} bases, {took:.1f}s")
        print(
            f"defaults: dedup.phash_max_distance {DEFAULT_PHASH}, semantic_min_cosine {DEFAULT_COSINE}"
        )
        paths = corpus["path"].to_list()
        ours, _ = our_features(paths)
        emb, t_sem = semantic(paths, args.batch_size)
        print(f"semantic embedding (NsfwModel, 1024-d): {len(paths) / t_sem:.1f} images/s")
        ours = ours.with_columns(
            semantic_emb=pl.Series(emb, dtype=pl.Array(pl.Float32, emb.shape[1]))
        )
        quality(
            corpus,
            ours,
            [int(x) for x in args.phash.split(",")],
            [float(x) for x in args.cosine.split(",")],
        )
        hasher, encodings = hashing_rates(image_dir, paths, "corpus images (PNG/JPEG, <=560 px)")
        search_rates(corpus, ours, hasher, encodings)
        if args.camera:
            camera_dir = Path(tmp) / "camera"
            camera = camera_photos(corpus, camera_dir, args.camera)
            hashing_rates(camera_dir, camera, "camera photos (4000x3000 JPEG q90)")


if __name__ == "__main__":
    main()
