"""Model backends behind one interface (base.Backend): hf, openai, vllm.

`make_backend(params)` builds one from a `generator:` or `describe.vlm:` params section. Each
backend's module is imported only when asked for, so vllm (extra `[gpu]`) and torch stay out of
processes that do not use them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from safeforge.backends.base import Backend, ChatRequest, Reply, Sampling

__all__ = ["BACKENDS", "Backend", "ChatRequest", "Reply", "Sampling", "make_backend"]

# name -> "module:class"; every class has `from_params(params) -> Backend`
BACKENDS = {
    "hf": "safeforge.backends.hf:HFBackend",
    "openai": "safeforge.backends.openai:OpenAIBackend",
    "vllm": "safeforge.backends.vllm:VLLMBackend",
}


def make_backend(params: Mapping[str, Any]) -> Backend:
    name = params.get("backend")
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r}: choose one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls).from_params(params)
