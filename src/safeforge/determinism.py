"""Bit-identical stage outputs on every machine: DVC tracks each output by its md5, so a float
may not depend on which CPU computed it.

The numeric libraries choose their kernels by the CPU they find, and the kernels round float32
sums differently in the last bits: numpy/scipy's OpenBLAS (DYNAMIC_ARCH) runs its AVX-512
(SkylakeX) sgemm on one machine and its AVX2 (Haswell/Zen) sgemm on another; torch picks
AVX-512 or AVX2 ATen kernels and oneDNN/MKL paths the same way. One or two units in the last
place of a MiniLM similarity were enough to change data/generate/records.parquet and every
output after it. So every stage process pins those libraries to their AVX2 kernels, which
every x86-64 machine since 2015 has, before any of them loads (`stages/__init__.py`).

A variable already set wins (OPENBLAS_CORETYPE=SkylakeX for speed, say), but then dvc.lock
matches only machines that choose alike. Not pinnable, so not covered: onnxruntime's MLAS
kernels (open_nsfw scores and image features), and machines other than x86-64 (Apple and other
ARM). The scalar scores a stage stores are rounded to SCORE_DECIMALS (`stable_scores`), which
absorbs such last-bit noise in all but rare boundary cases; embeddings cannot be rounded away.

Training is pinned too: the probe judge's gradients are sums over a batch that torch splits
across its threads, so the weights depended on the core count (`fixed_threads`).
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from pathlib import Path

# each library's own switch; all four are read once, when the library loads or first computes
CPU_KERNEL_PINS = {
    "OPENBLAS_CORETYPE": "Haswell",  # numpy, scipy, scikit-learn (scipy-openblas wheels)
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's vectorised ATen kernels (softmax, layer norm, gelu)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # torch's oneDNN matmul and linear layers
    "MKL_CBWR": "AVX2",  # torch's MKL: conditional numerical reproducibility on the AVX2 path
}

# Cosines and probabilities are compared with thresholds of two decimals (generate.min_similarity,
# quality.max_text_only_p_unsafe, ...); the kernels above disagree by up to ~2.4e-7. Four
# decimals keep two orders of magnitude below every threshold and three above that noise.
SCORE_DECIMALS = 4


def _has_avx2() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # no procfs (macOS): every x86-64 Mac since 2013 has AVX2
        return platform.system() == "Darwin"
    return " avx2" in flags


def pin_cpu_kernels(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set CPU_KERNEL_PINS in the environment (those not already set); returns what was set.

    Call before numpy or torch is imported: they read these once. A no-op off x86-64 or on a
    CPU without AVX2, where there is nothing common to pin to.
    """
    env = os.environ if environ is None else environ
    if platform.machine().lower() not in ("x86_64", "amd64") or not _has_avx2():
        return {}
    added = {k: v for k, v in CPU_KERNEL_PINS.items() if k not in env}
    env.update(added)
    return added


@contextlib.contextmanager
def fixed_threads(n: int = 1) -> Iterator[None]:
    """Run torch on exactly `n` intra-op threads inside the block, whatever the core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stable_scores(values, decimals: int = SCORE_DECIMALS):
    """`values` rounded to `decimals` (half to even), as float64; cast to float32 afterwards
    where the schema says float32 (the cast of a rounded value is itself deterministic)."""
    import numpy as np

    return np.round(np.asarray(values, dtype=np.float64), decimals)
