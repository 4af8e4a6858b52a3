"""The model and processor: loaded from a local folder (never downloaded), prepared for
training (vision tower frozen, LoRA adapters or full fine-tuning), saved and loaded back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from safeforge.judges.vlm.config import VlmConfig, resolve_device, resolve_dtype

ADAPTER_DIR, MODEL_DIR, PROCESSOR_DIR = "adapter", "model", "processor"
# attribute names of the vision encoder in transformers VLMs: LLaVA-likes (vision_tower),
# Qwen2/2.5-VL (visual), Idefics/SmolVLM/PaliGemma-likes (vision_model)
VISION_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder")
# projectors that live inside the vision module (Qwen2/2.5-VL's "merger"); they stay trainable,
# as LLaVA's multi_modal_projector (outside its vision tower) does: freezing means the encoder
PROJECTOR_NAMES = ("merger",)


def model_folder(model: str) -> Path:
    """The local base-model folder; never downloads, and says how to get the default one."""
    folder = Path(model).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"judge.model={model!r}: no model folder there (no config.json), and this judge never "
            f"downloads. Get the default once with `huggingface-cli download "
            f"Qwen/Qwen2.5-VL-7B-Instruct --local-dir {model}`, or set judge.model to a local "
            f"image-text-to-text model folder."
        )
    return folder


def load_model(folder: Path, cfg: VlmConfig, device: torch.device) -> Any:
    from transformers import AutoModelForImageTextToText

    dtype = resolve_dtype(cfg.dtype, device)
    model = AutoModelForImageTextToText.from_pretrained(
        folder, dtype=dtype, trust_remote_code=cfg.trust_remote_code
    )
    return model.to(device)


def load_processor(folder: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code)
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def vision_module_name(model: torch.nn.Module) -> str | None:
    """The top-most submodule named like a vision encoder (see VISION_NAMES), or None."""
    names = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in VISION_NAMES]
    return min(names, key=lambda n: n.count("."), default=None)


def _frozen(name: str, vision: str | None) -> bool:
    """Whether parameter/module `name` is in the vision encoder `vision` (None: nothing is)."""
    if vision is None or not (name == vision or name.startswith(vision + ".")):
        return False
    return not any(f".{p}." in name or name.endswith(f".{p}") for p in PROJECTOR_NAMES)


def prepare_for_training(model: Any, cfg: VlmConfig) -> Any:
    """Freeze the vision tower and wrap LoRA adapters (or train everything else in full)."""
    vision = vision_module_name(model)
    if cfg.freeze_vision and vision is None:
        raise ValueError(
            f"judge.freeze_vision=true but {type(model).__name__} has no submodule named any of "
            f"{list(VISION_NAMES)}; set judge.freeze_vision=false to train the whole model"
        )
    frozen = vision if cfg.freeze_vision else None
    if cfg.gradient_checkpointing:
        # non-reentrant: works with a frozen base (LoRA) without forcing input grads
        kwargs = {"use_reentrant": False}
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers 5 name
        if enable is not None:
            enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if cfg.finetune == "full":
        for name, p in model.named_parameters():
            p.requires_grad_(not _frozen(name, frozen))
        return model
    from peft import LoraConfig, get_peft_model

    wanted = set(cfg.lora_target_modules)
    # full module names, so a frozen vision tower that shares layer names (Qwen2.5-VL's MLP has
    # gate/up/down_proj too) gets no adapters
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name.rsplit(".", 1)[-1] in wanted
        and not _frozen(name, frozen)
    ]
    if not targets:
        linear = sorted(
            {
                n.rsplit(".", 1)[-1]
                for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear)
            }
        )
        raise ValueError(
            f"judge.lora_target_modules={cfg.lora_target_modules} match no linear layer outside the "
            f"frozen vision tower; linear layer names in this model: {linear}"
        )
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    return get_peft_model(model, lora)


def save_weights(model: Any, processor: Any, directory: Path, finetune: str) -> None:
    """LoRA: the adapters alone (safetensors), the base model is read from config.model at
    load; full: the whole model. The processor beside either."""
    if finetune == "lora":
        model.save_pretrained(
            directory / ADAPTER_DIR, safe_serialization=True, save_embedding_layers=False
        )
    else:
        model.save_pretrained(directory / MODEL_DIR)  # safetensors: transformers 5 default
    processor.save_pretrained(directory / PROCESSOR_DIR)


def load_weights(directory: Path, cfg: VlmConfig) -> tuple[Any, Any]:
    """(model, processor) as `save_weights` left them in `directory`, on cfg.device."""
    device = resolve_device(cfg.device)
    processor = load_processor(directory / PROCESSOR_DIR, cfg.trust_remote_code)
    if cfg.finetune == "lora":
        from peft import PeftModel

        base = load_model(model_folder(cfg.model), cfg, device)
        model = PeftModel.from_pretrained(base, directory / ADAPTER_DIR)
    else:
        model = load_model(directory / MODEL_DIR, cfg, device)
    return model, processor
