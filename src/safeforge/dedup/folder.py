"""Image dedup on any folder, without the pipeline (`safeforge dedup images DIR`).

Files are listed as the folder source lists them (images/ingest.py `list_source`: recursive,
sorted, hidden files and captions.jsonl skipped) and read with ingest's checks: a link leading
out of the folder is refused before anything is read through it (`path_escapes_source`), and a
file that is not a readable image is reported with its reason (`not_a_file`, `empty_file`,
`not_an_image`, `corrupt_image`, `decompression_bomb`), never dropped silently. Every other file
gets the features embed computes (embeddings/images.py) in worker processes, then the clusters
dedup/images.py builds in the pipeline, with the same conf (`dedup` section) and keeper rule.
Paths are relative to the folder, and each image's id is its path, so the output is the same
from run to run.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from safeforge.dedup.images import IMAGE_PARAMS, image_clusters, image_params
from safeforge.dedup.perceptual import hamming
from safeforge.embeddings.images import image_file_features
from safeforge.images.ingest import Rejected, SourceImage, list_source, pixel_sha256, read_image
from safeforge.images.load import load_rgb
from safeforge.perception.nsfw import NsfwModel

SEMANTIC_BATCH = 32  # images per embedding run (and decoded at once)


@dataclass(frozen=True)
class Member:
    path: str
    method: str  # image_exact, image_phash, image_layout or image_semantic
    score: float  # its best link's match score
    phash_distance: int  # Hamming distance of its pHash to the keeper's


@dataclass(frozen=True)
class Cluster:
    keeper: str
    members: list[Member]


@dataclass(frozen=True)
class Unreadable:
    path: str
    reason: str
    detail: str


@dataclass
class FolderResult:
    images: int  # readable images, clustered
    clusters: list[Cluster] = field(default_factory=list)  # of 2+ images, by keeper path
    unreadable: list[Unreadable] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        duplicates = sum(len(c.members) for c in self.clusters)
        return (
            f"{self.images} images, {len(self.clusters)} clusters, {duplicates} duplicates,"
            f" {len(self.unreadable)} unreadable"
        )

    def lines(self) -> list[str]:
        """Human-readable: a block per cluster, the unreadable files, a summary line."""
        out = []
        for cluster in self.clusters:
            out.append(f"keep {cluster.keeper}")
            width = max(len(m.path) for m in cluster.members)
            out += [
                f"  dup  {m.path:<{width}}  {m.method:<14} score {m.score:.3f}"
                f"  phash distance {m.phash_distance}"
                for m in cluster.members
            ]
        if self.unreadable:
            out.append("unreadable")
            width = max(len(u.path) for u in self.unreadable)
            out += [f"  {u.path:<{width}}  {u.reason}" for u in self.unreadable]
        return [*out, self.summary()]


def check_overrides(overrides: Sequence[str]) -> None:
    """Each override is dedup.KEY=VALUE with KEY one image dedup reads; raises KeyError naming
    the key and the valid ones."""
    valid = ", ".join(f"dedup.{k}" for k in IMAGE_PARAMS)
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep:
            raise KeyError(f"--set {item!r}: expected KEY=VALUE; valid keys: {valid}")
        if key.removeprefix("dedup.") not in IMAGE_PARAMS or not key.startswith("dedup."):
            raise KeyError(f"--set: unknown key {key!r}; valid keys: {valid}")


def features_row(folder: Path, rel: str, max_pixels: int) -> dict:
    """An image's features (path, pixel_sha256, width, height, embed's features), or the reason
    it cannot be read (path, reason, detail)."""
    src = SourceImage(folder / rel, "", folder.resolve())
    try:
        _, _, rgb = read_image(src, max_pixels)
        try:
            features = image_file_features(str(src.path))
        except Exception as err:  # it decoded above: whatever fails now is this file's, not ours
            raise Rejected("corrupt_image", f"{src.path}: {type(err).__name__}: {err}") from None
    except Rejected as err:
        return {"path": rel, "reason": err.reason, "detail": err.detail}
    return {
        "path": rel,
        "file": str(src.path),
        "pixel_sha256": pixel_sha256(np.asarray(rgb)),
        "width": rgb.width,
        "height": rgb.height,
        **features,
    }


def read_all(folder: Path, rels: list[str], workers: int, max_pixels: int) -> Iterator[dict]:
    """features_row for each path, in order, in `workers` processes, with a progress bar."""
    read = functools.partial(features_row, folder, max_pixels=max_pixels)
    workers = min(workers, len(rels))
    with tqdm(total=len(rels), desc="image features", unit="image", file=sys.stderr) as bar:
        if workers <= 1:
            results: Iterator[dict] = map(read, rels)
            for row in results:
                bar.update()
                yield row
            return
        chunk = max(1, min(16, len(rels) // (workers * 4)))
        # fork where there is one: a spawned worker imports the whole `safeforge` command again
        # (3 s, more than the features of hundreds of images); workers only run features_row,
        # which never calls into polars or any other library holding threads of its own
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for row in pool.map(read, rels, chunksize=chunk):
                bar.update()
                yield row


def embeddings(folder: Path, rels: list[str]) -> np.ndarray:
    """The open_nsfw embedding of each image (only when semantic_min_cosine is set)."""
    model, chunks = NsfwModel(), []
    with tqdm(total=len(rels), desc="embeddings", unit="image", file=sys.stderr) as bar:
        for start in range(0, len(rels), SEMANTIC_BATCH):
            batch = [load_rgb(str(folder / r)) for r in rels[start : start + SEMANTIC_BATCH]]
            chunks.append(model.score_and_features(batch, SEMANTIC_BATCH)[1])
            bar.update(len(batch))
    return np.concatenate(chunks).astype(np.float32)


def dedup_folder(folder: Path, params: Mapping, workers: int, max_pixels: int) -> FolderResult:
    """Duplicate clusters among the image files under `folder`; `params` is the conf `dedup`
    section (the IMAGE_PARAMS keys are read), `max_pixels` the decompression-bomb limit
    (conf `ingest.max_pixels`)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    used = image_params(params)
    rels = [s.path.relative_to(folder).as_posix() for s in list_source(folder)]
    rows = list(read_all(folder, rels, workers, max_pixels))
    unreadable = [Unreadable(r["path"], r["reason"], r["detail"]) for r in rows if "reason" in r]
    ok = [r for r in rows if "reason" not in r]
    result = FolderResult(images=len(ok), unreadable=unreadable, params=used)
    if not ok:
        return result
    # image_id: the relative path; path: the file (keypoint checks reopen it)
    images = pl.DataFrame(
        [{k: v for k, v in r.items() if k not in ("path", "file")} for r in ok]
    ).with_columns(
        image_id=pl.Series([r["path"] for r in ok]), path=pl.Series([r["file"] for r in ok])
    )
    if used["semantic_min_cosine"] is not None:
        emb = embeddings(folder, [r["path"] for r in ok])
        images = images.with_columns(
            semantic_emb=pl.Series(emb, dtype=pl.Array(pl.Float32, emb.shape[1]))
        )
    out = image_clusters(images, **used, workers=workers)
    phash = dict(zip(images["image_id"], images["phash"], strict=True))
    dups = out.filter(pl.col("image_cluster") != pl.col("image_id")).sort(
        "image_cluster", "image_id"
    )
    for (keeper,), group in dups.group_by("image_cluster", maintain_order=True):
        members = [
            Member(
                path=row["image_id"],
                method=row["dup_method"],
                score=round(float(row["dup_score"]), 4),
                phash_distance=hamming(phash[row["image_id"]], phash[keeper]),
            )
            for row in group.iter_rows(named=True)
        ]
        result.clusters.append(Cluster(keeper=keeper, members=members))
    return result


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
