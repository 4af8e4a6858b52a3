"""Verification of candidate duplicate pairs on 64x64 grey thumbnails (images/thumb.py).

A close pHash, layout or embedding makes a pair a candidate, not a duplicate: two distinct
images on one white background, or two slides of text, are close on all three. A pair is a
duplicate only when one thumbnail, warped by one of a small grid of similarity transforms (zoom
for crops, rotation), matches the other block by block:

- both are band-passed (a difference of Gaussians), so brightness, contrast and flat
  backgrounds drop out and only structure is compared;
- over the central 48x48 region (the borders are where crops and rotations differ) the warp
  with the highest normalised cross-correlation (NCC) is kept;
- at that warp the region is cut into 4x4 blocks; each block with structure in either image
  is scored by its NCC, and the pair's score is their median. An overlaid caption spoils a row
  of blocks, not the median; two distinct images agree on their background, which is not scored.
- the smooth parts (the low-passed regions at that warp) must agree as well, if loosely: two
  smooth fields share blob-shaped structure in every block, not the layout of their blobs. An
  image with too little structure to score blocks (a near-blank page) is judged on them alone.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
from scipy.sparse import csr_matrix

from safeforge.images.thumb import THUMB_SIDE

# the search grid: zoom both ways (a 5%-per-side crop is x1.11) and rotation, in degrees;
# a residual of half a step moves the region's corners by < 1 px, which the band-pass absorbs
ZOOMS = (1 / 1.12, 1 / 1.06, 1.0, 1.06, 1.12)
ANGLES = (-3.0, 0.0, 3.0)
REGION = 48  # central region compared, px of the 64 px thumbnail
BLOCKS = 4  # blocks per side of the region
SIGMAS = (1.0, 4.0)  # band-pass: detail finer than 1 px (noise, JPEG) and coarser than 4 px out
FLAT_STD = 1.5  # a block whose band-passed grey levels vary less has no structure to compare
MIN_BLOCKS = 3  # fewer structured blocks: the smooth parts decide
SMOOTH_MIN = 0.5  # below it the smooth parts disagree: the score is the lower of the two
PAIRS_PER_CHUNK = 1024  # a chunk's coarse warps: 15 x 576 x 1024 float32, 35 MB


def _sampling(zoom: float, angle: float, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling of the region (every `stride`-th pixel) from a warped thumbnail: 4 flat
    indices and 4 weights per sampled pixel, each (pixels, 4)."""
    centre = (THUMB_SIDE - 1) / 2
    offsets = np.arange(0, REGION, stride) - (REGION - 1) / 2
    py, px = np.meshgrid(offsets, offsets, indexing="ij")
    theta = np.deg2rad(angle)
    x = centre + zoom * (np.cos(theta) * px - np.sin(theta) * py)
    y = centre + zoom * (np.sin(theta) * px + np.cos(theta) * py)
    x = np.clip(x, 0, THUMB_SIDE - 1.001).ravel()
    y = np.clip(y, 0, THUMB_SIDE - 1.001).ravel()
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    index = np.stack(
        [
            y0 * THUMB_SIDE + x0,
            y0 * THUMB_SIDE + x0 + 1,
            (y0 + 1) * THUMB_SIDE + x0,
            (y0 + 1) * THUMB_SIDE + x0 + 1,
        ],
        axis=1,
    )
    weight = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    return index, weight.astype(np.float32)


def _warp_matrix(samplings: list[tuple[np.ndarray, np.ndarray]]) -> csr_matrix:
    """The samplings stacked as one sparse (len * REGION**2, THUMB_SIDE**2) matrix: one product
    warps a whole chunk of thumbnails every way at once."""
    index = np.concatenate([i for i, _ in samplings])
    weight = np.concatenate([w for _, w in samplings])
    rows = np.repeat(np.arange(len(index)), 4)
    shape = (len(index), THUMB_SIDE * THUMB_SIDE)
    return csr_matrix((weight.ravel(), (rows, index.ravel())), shape=shape, dtype=np.float32)


GRID = list(itertools.product(ZOOMS, ANGLES))
# the search runs on every other pixel of the region; the blocks are scored at full resolution
COARSE = _warp_matrix([_sampling(z, a, stride=2) for z, a in GRID])
COARSE_IDENTITY = _warp_matrix([_sampling(1.0, 0.0, stride=2)])
FINE = [_warp_matrix([_sampling(z, a)]) for z, a in GRID]


def filtered(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 64, 64) uint8 -> detail (difference of Gaussians) and smooth (the coarser Gaussian),
    each (n, 64*64) float32."""
    detail = np.empty((len(thumbs), THUMB_SIDE * THUMB_SIDE), dtype=np.float32)
    smooth = np.empty_like(detail)
    for k, thumb in enumerate(thumbs.astype(np.float32)):
        fine, coarse = (
            cv2.GaussianBlur(thumb, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
            for sigma in SIGMAS
        )
        detail[k], smooth[k] = (fine - coarse).ravel(), coarse.ravel()
    return detail, smooth


def _detrend_matrix(side: int) -> np.ndarray:
    """Projection removing a block's plane of best fit (mean and linear ramps): a smooth shading
    is a plane at this scale, and any two planes correlate; only what is left is structure."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    basis = np.stack([np.ones(side * side), xx.ravel(), yy.ravel()], axis=1)
    return (np.eye(side * side) - basis @ np.linalg.pinv(basis)).astype(np.float32)


DETREND = _detrend_matrix(REGION // BLOCKS)


def _blocks(region: np.ndarray) -> np.ndarray:
    """(n, REGION**2) -> (n, BLOCKS**2, pixels per block), each block's plane removed."""
    side = REGION // BLOCKS
    b = region.reshape(-1, BLOCKS, side, BLOCKS, side).transpose(0, 1, 3, 2, 4)
    return b.reshape(len(region), BLOCKS * BLOCKS, side * side) @ DETREND


def _centred(x: np.ndarray, axis: int) -> np.ndarray:
    return x - x.mean(axis=axis, keepdims=True)


def _ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise NCC of (n, pixels) arrays."""
    a, b = _centred(a, axis=1), _centred(b, axis=1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return (a * b).sum(axis=1) / np.maximum(den, 1e-6)


def _chunk_scores(first_t: np.ndarray, second_t: np.ndarray) -> np.ndarray:
    """Scores of pairs (first_t[:, k], second_t[:, k]): columns of detail then smooth pixels."""
    n, area = first_t.shape[1], THUMB_SIDE * THUMB_SIDE
    target = _centred(COARSE_IDENTITY @ second_t[:area], axis=0)  # (pixels, pairs)
    warped = _centred((COARSE @ first_t[:area]).reshape(len(GRID), -1, n), axis=1)
    num = (warped * target).sum(axis=1)
    den = np.sqrt((warped * warped).sum(axis=1) * (target * target).sum(axis=0))
    best = np.argmax(num / np.maximum(den, 1e-6), axis=0)  # the warp that aligns them best
    aligned = np.empty((2, n, REGION * REGION), dtype=np.float32)  # detail, smooth
    for k in np.unique(best):
        rows = np.flatnonzero(best == k)
        aligned[0, rows] = (FINE[k] @ first_t[:area, rows]).T
        aligned[1, rows] = (FINE[k] @ first_t[area:, rows]).T
    identity = FINE[GRID.index((1.0, 0.0))]
    a_blocks, b_blocks = _blocks(aligned[0]), _blocks((identity @ second_t[:area]).T)
    a_norm, b_norm = np.linalg.norm(a_blocks, axis=2), np.linalg.norm(b_blocks, axis=2)
    flat_norm = FLAT_STD * np.sqrt(a_blocks.shape[2])  # a block's norm at FLAT_STD
    structured = (a_norm > flat_norm) | (b_norm > flat_norm)
    block_ncc = (a_blocks * b_blocks).sum(axis=2) / np.maximum(a_norm * b_norm, 1e-6)
    enough = structured.sum(axis=1) >= MIN_BLOCKS
    block_ncc = np.where(structured & enough[:, None], block_ncc, np.inf)
    # the median of the structured blocks: sort, the infs (unscored) last
    count = np.maximum(structured.sum(axis=1), 1)
    ordered = np.sort(block_ncc, axis=1)
    pairs = np.arange(n)
    median = (ordered[pairs, (count - 1) // 2] + ordered[pairs, count // 2]) / 2
    smooth = _ncc(aligned[1], (identity @ second_t[area:]).T)
    score = np.where(smooth >= SMOOTH_MIN, median, np.minimum(median, smooth))
    return np.where(enough, score, smooth).astype(np.float32)


def pair_scores(thumbs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Match score in [-1, 1] of each pair (i, j) of rows of `thumbs` (n, 64, 64) uint8;
    copies of one image score near 1, distinct images near 0."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float32)
    if not len(pairs):
        return out
    # each image filtered once, held as columns (a chunk's gather is then contiguous);
    # float16 halves what a large candidate set holds
    rows, inverse = np.unique(pairs, return_inverse=True)
    columns = np.empty((2 * THUMB_SIDE * THUMB_SIDE, len(rows)), dtype=np.float16)
    for k in range(0, len(rows), 4096):
        detail, smooth = filtered(thumbs[rows[k : k + 4096]])
        columns[:, k : k + 4096] = np.concatenate([detail, smooth], axis=1).T
    inverse = inverse.reshape(-1, 2)
    for start in range(0, len(pairs), PAIRS_PER_CHUNK):
        chunk = inverse[start : start + PAIRS_PER_CHUNK]
        out[start : start + len(chunk)] = _chunk_scores(
            columns[:, chunk[:, 0]].astype(np.float32), columns[:, chunk[:, 1]].astype(np.float32)
        )
    return out


def layout_vectors(thumbs: np.ndarray, side: int = 16) -> np.ndarray:
    """(n, side*side) unit vectors of box-averaged, mean-centred thumbnails: a coarse layout that
    crops, small rotations, brightness and captions barely move (a candidate source)."""
    k = THUMB_SIDE // side
    x = thumbs.astype(np.float32).reshape(len(thumbs), side, k, side, k).mean(axis=(2, 4))
    x = x.reshape(len(thumbs), side * side)
    x -= x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
