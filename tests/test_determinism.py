"""Stage outputs must be the same bits on every machine: CPU kernel pins, fixed training
threads, stored scores rounded (safeforge/determinism.py)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

from safeforge.determinism import (
    CPU_KERNEL_PINS,
    SCORE_DECIMALS,
    _has_avx2,
    fixed_threads,
    pin_cpu_kernels,
    stable_scores,
)

X86_AVX2 = platform.machine().lower() in ("x86_64", "amd64") and _has_avx2()


@pytest.mark.skipif(not X86_AVX2, reason="pins apply to x86-64 with AVX2 only")
def test_pins_are_set_and_a_variable_already_set_wins():
    env = {"OPENBLAS_CORETYPE": "SkylakeX"}
    added = pin_cpu_kernels(env)
    assert "OPENBLAS_CORETYPE" not in added and env["OPENBLAS_CORETYPE"] == "SkylakeX"
    assert {k: env[k] for k in added} == {
        k: v for k, v in CPU_KERNEL_PINS.items() if k != "OPENBLAS_CORETYPE"
    }


@pytest.mark.skipif(not X86_AVX2, reason="pins apply to x86-64 with AVX2 only")
def test_a_stage_process_runs_numpy_on_the_pinned_kernel():
    """`python -m stages.<name>` imports stages/ first: numpy's OpenBLAS then loads pinned."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in CPU_KERNEL_PINS}
    code = (
        "import json, os, stages, numpy, threadpoolctl;"
        "print(json.dumps([[i.get('architecture') for i in threadpoolctl.threadpool_info()"
        " if i['internal_api'] == 'openblas'], os.environ['ATEN_CPU_CAPABILITY']]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    blas, aten = json.loads(out.stdout)
    assert set(blas) <= {"Haswell"} and aten == "avx2"


def test_fixed_threads_restores_the_caller_setting():
    import torch

    before = torch.get_num_threads()
    with fixed_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_stable_scores_absorb_last_bit_noise():
    x = np.array([0.33631107, -0.12345678, 0.9999], dtype=np.float32)
    noisy = np.nextafter(x, np.float32(2))  # one unit in the last place up
    assert np.array_equal(stable_scores(x), stable_scores(noisy))
    assert np.array_equal(stable_scores(x), np.round(x.astype(np.float64), SCORE_DECIMALS))
    assert stable_scores([]).shape == (0,)
