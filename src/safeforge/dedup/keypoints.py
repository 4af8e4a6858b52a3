"""A second opinion on a pair the thumbnails call alike but not surely: local features.

Two slides of different text in one layout, or two icons on white, look alike at 64 px; their
letters and corners do not. ORB keypoints on the 512-px grey images are matched (Lowe's ratio
test), and the pair holds when enough matches agree on one similarity transform (RANSAC):
copies under crop, rotation, re-encoding or a caption keep most of their keypoints in place,
distinct pictures match only by chance and in no common geometry.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np
from PIL import Image

from safeforge.images.load import load_grey

SIDE = 512  # the scale pHash and the image stats start from (embeddings/images.py)
FEATURES = 500  # ORB keypoints per image
RATIO = 0.8  # Lowe's ratio test: the best match clearly better than the second
REPROJECTION_PX = 4.0  # RANSAC inlier distance at 512 px
MIN_KEYPOINTS = 20  # fewer on either side (a near-blank page): no opinion

Keypoints = tuple[np.ndarray, np.ndarray | None]  # (n, 2) positions, (n, 32) descriptors


def keypoints(path: str) -> Keypoints:
    """ORB keypoints of the image at `path`, its longer side brought to SIDE: a half-size copy
    would otherwise find its keypoints at another scale, and a small one none at all."""
    grey = load_grey(path, SIDE)
    if max(grey.size) < SIDE:
        scale = SIDE / max(grey.size)
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BILINEAR)
    grey = np.asarray(grey)
    found, descriptors = cv2.ORB_create(nfeatures=FEATURES).detectAndCompute(grey, None)
    return np.float32([k.pt for k in found]).reshape(-1, 2), descriptors


def inlier_share(a: Keypoints, b: Keypoints) -> float | None:
    """Matches consistent with one similarity transform, as a share of the smaller keypoint
    set; None when either image has too few keypoints to judge."""
    (pa, da), (pb, db) = a, b
    if da is None or db is None or min(len(pa), len(pb)) < MIN_KEYPOINTS:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < 4:
        return 0.0
    src = pa[[m.queryIdx for m in good]]
    dst = pb[[m.trainIdx for m in good]]
    _, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PX
    )
    inliers = 0 if mask is None else int(mask.sum())
    return inliers / min(len(pa), len(pb))


# the keypoints a batch needs, set in the parent before it forks its workers: they inherit them
# rather than receiving each pair's descriptors through a pipe
_SHARED: dict[int, Keypoints] = {}


def _keypoints_alone(path: str) -> Keypoints:
    cv2.setNumThreads(1)  # one process per core already
    return keypoints(path)


def _shared_share(pair: tuple[int, int]) -> float | None:
    cv2.setNumThreads(1)
    return inlier_share(_SHARED[pair[0]], _SHARED[pair[1]])


def pair_shares(
    pairs: np.ndarray, paths: list[str], known: dict[int, Keypoints], workers: int
) -> list[float | None]:
    """inlier_share of each pair (i, j) of `paths`; keypoints come from `known` or are computed
    (and added to it), each image once, in `workers` forked processes where the platform forks."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    todo = sorted(set(pairs.ravel().tolist()) - known.keys())
    forks = "fork" in multiprocessing.get_all_start_methods()
    if workers <= 1 or not forks or len(pairs) < 2 * workers:
        for i in todo:
            known[i] = keypoints(paths[i])
        return [inlier_share(known[a], known[b]) for a, b in pairs.tolist()]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        found = pool.map(_keypoints_alone, [paths[i] for i in todo], chunksize=8)
        known.update(zip(todo, found, strict=True))
    _SHARED.clear()
    _SHARED.update({i: known[i] for i in set(pairs.ravel().tolist())})
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            return list(pool.map(_shared_share, map(tuple, pairs.tolist()), chunksize=64))
    finally:
        _SHARED.clear()
