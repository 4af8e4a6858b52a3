"""VlmConfig: the `judge` section of conf/judge/vlm.yaml, and the device and dtype it resolves to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from safeforge.config import from_section

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WHERE = "judge (vlm)"


@dataclass
class VlmConfig:
    """Every value comes from conf/judge/vlm.yaml; the fields only type it (no defaults here)."""

    model: str
    trust_remote_code: bool
    finetune: str  # lora | full
    freeze_vision: bool
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str]
    lr: float
    weight_decay: float
    epochs: int
    warmup_ratio: float
    batch_size: int
    grad_accum: int
    max_grad_norm: float
    max_seq_len: int
    max_image_side: int
    gradient_checkpointing: bool
    dtype: str  # auto | float32 | bfloat16 | float16
    device: str  # auto | cpu | cuda | cuda:N
    seed: int
    rationale_max_chars: int
    generate: bool
    max_new_tokens: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VlmConfig:
        """The `judge` config section without "kind"; a key missing or misspelt raises KeyError."""
        cfg = from_section(cls, WHERE, params)
        cfg.lora_target_modules = [str(m) for m in cfg.lora_target_modules]  # OmegaConf lists
        if cfg.finetune not in ("lora", "full"):
            raise ValueError(f"judge.finetune={cfg.finetune!r}: use 'lora' or 'full'")
        if cfg.dtype != "auto" and cfg.dtype not in DTYPES:
            raise ValueError(f"judge.dtype={cfg.dtype!r}: use auto or one of {sorted(DTYPES)}")
        return cfg


def resolve_device(device: str) -> torch.device:
    return torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    )


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on CUDA (the base is frozen for LoRA, and peft keeps adapters in fp32), fp32
    on CPU, where bf16 matmuls are slow."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]
