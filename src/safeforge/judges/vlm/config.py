"""VlmConfig: the `judge` section of conf/judge/vlm.yaml, and the device and dtype it resolves to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from safeforge.config import check_keys

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# the language model's attention and MLP projections (Qwen2/Llama/Mistral names)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class VlmConfig:
    model: str = "models/Qwen2.5-VL-7B-Instruct"
    trust_remote_code: bool = False
    finetune: str = "lora"  # lora | full
    freeze_vision: bool = True
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    lr: float = 1e-5
    weight_decay: float = 0.0
    epochs: int = 3
    warmup_ratio: float = 0.05
    batch_size: int = 4
    grad_accum: int = 8
    max_grad_norm: float = 1.0
    max_seq_len: int = 2048
    max_image_side: int = 672
    gradient_checkpointing: bool = False
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    rationale_max_chars: int = 500
    generate: bool = True
    max_new_tokens: int = 256

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VlmConfig:
        """The `judge` config section without "kind"; a misspelt key raises KeyError."""
        check_keys("vlm judge", params, [f.name for f in fields(cls)])
        cfg = cls(**dict(params))
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
