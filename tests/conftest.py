"""Shared test set-up: offline, no analytics, a private row cache per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # never read or pollute the user's row cache
    os.environ["SAFEFORGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("row-cache"))
