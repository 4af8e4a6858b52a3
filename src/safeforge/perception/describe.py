"""Per image: a description and perception signals (OCR text, NSFW score), through the row cache.

With a VLM configured (describe.vlm), it writes the description; without one, or where its reply
is unusable twice, the description is the caption. Either way the text OCR reads is appended.
The NSFW model's pooled features are cached with its score, so `embed` reuses this very call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from PIL import Image, ImageOps

from safeforge.cache import RowCache, cache_key, json_codec

NSFW_VALUE = np.dtype([("score", np.float32), ("features", np.float32, (1024,))])


def load_rgb(path: str) -> Image.Image:
    """RGB pixels, upright: ingested copies are already, benchmark files may carry EXIF rotation."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def nsfw_cached(
    images: pl.DataFrame, model: Any, cache: RowCache, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """NSFW scores (n,) and pooled features (n, 1024) for rows with image_id and path."""

    def compute(rows: list[dict]) -> list[np.ndarray]:
        scores, feats = model.score_and_features(
            [load_rgb(r["path"]) for r in rows], batch_size=batch_size
        )
        return [np.array((s, f), dtype=NSFW_VALUE) for s, f in zip(scores, feats, strict=False)]

    values = cache.map(
        images.select("image_id", "path").to_dicts(),
        key_fn=lambda r: cache_key(kind="nsfw", model=model.model_id, image_id=r["image_id"]),
        compute=compute,
        encode=lambda v: v.tobytes(),
        decode=lambda b: np.frombuffer(b, dtype=NSFW_VALUE)[0],
        batch_size=batch_size,
        desc="nsfw",
    )
    if not values:
        return np.zeros(0, np.float32), np.zeros((0, 1024), np.float32)
    return np.array([v["score"] for v in values]), np.stack([v["features"] for v in values])


def ocr_cached(images: pl.DataFrame, reader: Any, cache: RowCache) -> list[dict]:
    encode, decode = json_codec()

    def compute(rows: list[dict]) -> list[dict]:
        out = []
        for r in rows:
            result = reader.read(np.asarray(load_rgb(r["path"])))
            out.append({"text": result.text, "confidence": result.confidence})
        return out

    return cache.map(
        images.select("image_id", "path").to_dicts(),
        key_fn=lambda r: cache_key(
            kind="ocr",
            model=reader.model_id,
            min_confidence=reader.min_confidence,
            image_id=r["image_id"],
        ),
        compute=compute,
        encode=encode,
        decode=decode,
        batch_size=8,
        desc="ocr",
    )


def compose_description(caption: str, ocr_text: str) -> str:
    parts = [caption.strip() or "An image."]
    if ocr_text:
        parts.append(f'Visible text: "{ocr_text}".')
    return " ".join(parts)


def vlm_descriptions(images: pl.DataFrame, chat: Any) -> list[str | None]:
    """The VLM's description of each image (a generate.chain.Chat), None where it failed."""
    from safeforge.generate.chain import DESCRIBE_SCHEMA, Ask

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
            "nsfw_score": scores.astype(np.float64),
            "description": [
                compose_description(v or c, t)
                for v, c, t in zip(by_vlm, captions, ocr_text, strict=True)
            ],
            "describer": [vlm_name if v else "caption+ocr" for v in by_vlm],
        }
    )
