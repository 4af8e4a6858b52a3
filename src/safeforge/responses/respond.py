"""The model under test answers each item as a user would send it: the image, then the text, no
system prompt (SaLAD and MMSafeAware ask their models this way). Replies go through the row
cache like every model call, so a rerun with another rater asks the model nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from safeforge.backends import Backend, ChatRequest, Reply, Sampling
from safeforge.backends.cached import cached_complete
from safeforge.cache import RowCache

# evaluate.models keys that rate but cannot answer
NOT_A_RESPONDER = ("heuristic",)


def model_section(models: Mapping[str, Any], name: str, role: str) -> Mapping[str, Any]:
    """evaluate.models.<name>, or a KeyError naming the role (model, rater) and the keys."""
    if name not in models:
        raise KeyError(f"evaluate.{role}={name!r}: not a key of evaluate.models {sorted(models)}")
    return models[name]


def ask(
    backend: Backend,
    cache: RowCache,
    items: pl.DataFrame,
    texts: Sequence[str],
    sampling: Sampling,
    batch_size: int,
    desc: str,
) -> list[Reply]:
    """One reply per item: `texts[i]` with item i's image (when the backend sees images)."""
    requests = [
        ChatRequest(
            messages=({"role": "user", "content": text},),
            images=(path,) if backend.supports_images else (),
            sampling=sampling,
        )
        for text, path in zip(texts, items["image_path"], strict=True)
    ]
    return cached_complete(backend, cache, requests, batch_size, desc)


def reply_columns(replies: Sequence[Reply], prefix: str) -> list[pl.Series]:
    """<prefix>, <prefix>_finish and <prefix>_error columns of the responses table."""
    return [
        pl.Series(prefix, [r.text if r.ok else None for r in replies], dtype=pl.String),
        pl.Series(f"{prefix}_finish", [r.finish_reason for r in replies], dtype=pl.String),
        pl.Series(f"{prefix}_error", [r.error for r in replies], dtype=pl.String),
    ]
