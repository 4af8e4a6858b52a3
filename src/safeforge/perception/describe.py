"""Per image: a description and perception signals (OCR text, NSFW score), through the row cache.

With a VLM configured (describe.vlm), it writes the description; without one, or where its reply
is unusable twice, the description is the caption. Either way the text OCR reads is appended.
The NSFW and OCR calls (nsfw.py, ocr.py) go through the row cache, so `embed` reuses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from safeforge.cache import RowCache
from safeforge.chain.chat import DESCRIBE_SCHEMA, Ask, Chat, Prompts, open_chat
from safeforge.determinism import stable_scores
from safeforge.perception.nsfw import nsfw_cached
from safeforge.perception.ocr import compose_description, ocr_cached


def describer_chat(p: Mapping[str, Any], cache: RowCache) -> Chat | None:
    """The VLM that writes descriptions, or None when `describe.vlm.backend` is unset.
    `p`: the sections describe, prompts.system, prompts.describe and prompts.retry."""
    vlm = p["describe"]["vlm"]
    if vlm["backend"] is None:
        return None
    if not vlm.get("model") or not vlm.get("images"):
        raise ValueError("describe.vlm needs a model that takes images (model set, images: true)")
    templates = {"describe": p["prompts.describe"], "retry": p["prompts.retry"]}
    prompts = Prompts("describe", p["prompts.system"], templates)
    return open_chat(vlm, prompts, cache, p["describe"]["batch_size"])


def vlm_descriptions(images: pl.DataFrame, chat: Any) -> list[str | None]:
    """The VLM's description of each image (a generate.chain.Chat), None where it failed."""

    asks = [
        Ask(r["image_id"], {}, (r["path"],)) for r in images.select("image_id", "path").to_dicts()
    ]
    return [v and v["description"] for v in chat.ask("describe", asks, DESCRIBE_SCHEMA)]


def describe(
    images: pl.DataFrame,
    reader: Any,
    nsfw: Any,
    cache: RowCache,
    batch_size: int,
    vlm_chat: Any = None,
) -> pl.DataFrame:
    ocr = ocr_cached(images, reader, cache)
    scores, _ = nsfw_cached(images, nsfw, cache, batch_size)
    ocr_text = [o["text"] for o in ocr]
    captions = images["caption"].to_list()
    by_vlm = vlm_descriptions(images, vlm_chat) if vlm_chat else [None] * images.height
    vlm_name = vlm_chat and f"{vlm_chat.backend.model_id}+ocr"
    return pl.DataFrame(
        {
            "image_id": images["image_id"],
            "caption": images["caption"],
            "ocr_text": ocr_text,
            # SCORE_DECIMALS: onnxruntime picks its kernels by CPU (determinism.py)
            "nsfw_score": stable_scores(scores),
            "description": [
                compose_description(v or c, t)
                for v, c, t in zip(by_vlm, captions, ocr_text, strict=True)
            ],
            "describer": [vlm_name if v else "caption+ocr" for v in by_vlm],
        }
    )
