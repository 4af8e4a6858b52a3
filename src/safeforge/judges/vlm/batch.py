"""Model inputs: images read and bounded, one row encoded with its label mask, rows padded and
stacked into a batch on the model's device.

Prompts and replies are tokenized apart and concatenated (prompt by the processor, which
expands the image tokens; reply or prefill by the tokenizer), in training and scoring alike, so
both see exactly the same ids and the reply/prompt boundary needs no offset arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from safeforge.images.load import load_rgb


def load_image(path: str, max_side: int) -> Image.Image:
    """RGB, upright, longer side at most `max_side`: bounds the image tokens of dynamic-resolution
    models (Qwen2.5-VL makes one token per 28x28 pixels; 672 px -> at most 576 tokens)."""
    image = load_rgb(path)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image


def token_keys(enc: Mapping[str, torch.Tensor]) -> set[str]:
    """Processor outputs with one value per token (input_ids' shape); the rest are image
    tensors (pixel_values, image_grid_thw, image_sizes) with one entry per image along dim 0."""
    shape = enc["input_ids"].shape
    return {k for k, v in enc.items() if isinstance(v, torch.Tensor) and v.shape == shape}


def encode(
    processor: Any, prompt: str, image: Image.Image, tail_ids: list[int]
) -> dict[str, torch.Tensor]:
    """One row, unpadded: the processor's encoding of `prompt` (chat-template text) and `image`
    with `tail_ids` (the reply, or the prefill) appended; `labels` marks the tail alone (-100 on
    the prompt)."""
    enc = dict(processor(text=[prompt], images=[[image]], return_tensors="pt"))
    ids = enc["input_ids"]
    tail = torch.tensor([tail_ids], dtype=ids.dtype)
    for key in token_keys(enc):
        # input_ids get the tail, attention_mask ones, per-token type ids (Qwen2.5-VL's
        # mm_token_type_ids) zeros: text
        extra = tail if key == "input_ids" else torch.full_like(tail, int(key == "attention_mask"))
        enc[key] = torch.cat([enc[key], extra.to(enc[key].dtype)], dim=1)
    enc["labels"] = torch.cat([torch.full_like(ids, -100), tail], dim=1)
    return enc


def collate(
    rows: Sequence[dict[str, torch.Tensor]], side: str, pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Pad per-token tensors on `side` (right for training, left for scoring, so the last
    position is every row's next token) and concatenate the image tensors along dim 0."""
    keys = token_keys(rows[0]) | {"labels"}
    width = max(r["input_ids"].shape[1] for r in rows)
    pad = {"input_ids": pad_token_id, "labels": -100}
    out: dict[str, torch.Tensor] = {}
    for key in rows[0]:
        if key not in keys:
            out[key] = torch.cat([r[key] for r in rows], dim=0)
            continue
        padded = []
        for r in rows:
            t = r[key]
            fill = torch.full((1, width - t.shape[1]), pad.get(key, 0), dtype=t.dtype)
            padded.append(torch.cat([fill, t] if side == "left" else [t, fill], dim=1))
        out[key] = torch.cat(padded, dim=0)
    return out


def to_device(
    batch: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Every tensor on `device`; floating ones (pixel values come as fp32) in the model's
    `dtype`, as a bf16 model wants bf16."""
    return {
        k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
        for k, v in batch.items()
    }
