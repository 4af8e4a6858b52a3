"""The relevance scan's encoders: a local CLIP-type model (image-rule cosine, as the paper), or
MiniLM between the rule text and the MLLM's description of the image plus the request; and the
choice of the top_k rules at or above the minimum similarity."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from safeforge.backends.base import file_sha256
from safeforge.backends.hf import folder_fingerprint
from safeforge.cache import RowCache, cache_key
from safeforge.embeddings.text import cosine_matrix, encode_cached
from safeforge.images.load import load_rgb
from safeforge.shippable import Shippable

log = logging.getLogger(__name__)


def relevance_text(description: str, text: str) -> str:
    """What MiniLM compares with each rule: the description (when there is one) and the request."""
    return f"{description}\nUser's request: {text}" if description else f"User's request: {text}"


def text_similarities(
    encoder: Any, queries: list[str], rule_texts: list[str], cache: RowCache
) -> np.ndarray:
    """(queries, rules) MiniLM cosine (a TextEncoder), embeddings through the row cache."""

    item_emb = encode_cached(encoder, queries, cache)
    rule_emb = encode_cached(encoder, rule_texts, cache)
    return cosine_matrix(item_emb, rule_emb)


def top_rules(sims: np.ndarray, top_k: int, min_similarity: float) -> list[list[tuple[int, float]]]:
    """Per item: (rule index, similarity) of the top_k rules at or above min_similarity,
    most similar first (ties in constitution order)."""
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")
        kept = [(int(r), float(row[r])) for r in order if row[r] >= min_similarity]
        out.append(kept[:top_k])
    return out


class ClipScanner(Shippable):
    """Image and text embeddings from a local CLIP-type folder (AutoModel + AutoProcessor,
    never remote code), unit length, cached in the row cache; the model loads on a miss."""

    # a copy on a Ray actor loads its own model
    _transient: ClassVar[dict[str, Callable[[], Any]]] = {
        "model": lambda: None,
        "processor": lambda: None,
    }

    def __init__(self, folder: str) -> None:

        self.folder = Path(folder).expanduser()
        if not (self.folder / "config.json").exists():
            raise FileNotFoundError(
                f"relevance.clip_model={folder!r}: not a model folder (no config.json); "
                "this judge never downloads"
            )
        self.model_id = f"{self.folder}+{folder_fingerprint(self.folder)}"
        self.model: Any = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.folder, trust_remote_code=False)
        self.model = AutoModel.from_pretrained(self.folder, trust_remote_code=False).eval()
        text_config = getattr(self.model.config, "text_config", self.model.config)
        self.max_length = int(getattr(text_config, "max_position_embeddings", 77))

    @staticmethod
    def _unit(out: Any) -> list[np.ndarray]:
        tensor = out if hasattr(out, "detach") else out.pooler_output  # transformers 5 wraps it
        x = tensor.detach().float().numpy()
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return list(x.astype(np.float32))

    def _image_features(self, paths: list[str]) -> list[np.ndarray]:
        import torch

        if self.model is None:
            self._load()
        images: dict[int, Image.Image] = {}
        for i, path in enumerate(paths):
            try:
                images[i] = load_rgb(path)
            except (OSError, ValueError) as err:  # unreadable: cosine 0 with every rule
                log.warning("clue relevance: cannot read %s (%s)", path, err)
        out: list[np.ndarray] = []
        if images:
            inputs = self.processor(images=list(images.values()), return_tensors="pt")
            with torch.inference_mode():
                features = self.model.get_image_features(pixel_values=inputs["pixel_values"])
            out = self._unit(features)
        by_index = dict(zip(images, out, strict=True))
        dim = (out or self._text_features([""]))[0].shape[0]
        return [by_index.get(i, np.zeros(dim, np.float32)) for i in range(len(paths))]

    def _text_features(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        if self.model is None:
            self._load()
        inputs = self.processor(
            text=texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
        )
        with torch.inference_mode():
            return self._unit(
                self.model.get_text_features(
                    input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")
                )
            )

    def images(self, paths: list[str], cache: RowCache, batch_size: int) -> np.ndarray:
        return self._cached(paths, cache, batch_size, "image", self._image_features, file_sha256)

    def texts(self, texts: list[str], cache: RowCache, batch_size: int) -> np.ndarray:
        return self._cached(texts, cache, batch_size, "text", self._text_features, str)

    def _cached(
        self,
        items: list[str],
        cache: RowCache,
        batch_size: int,
        what: str,
        compute: Callable[[list[str]], list[np.ndarray]],
        content: Callable[[str], str],
    ) -> np.ndarray:
        """(items, dim) features through the row cache, keyed by the model and `content(item)`
        (an image file's hash, a text itself)."""
        rows = cache.map(
            items,
            key_fn=lambda x: cache_key(
                kind=f"clip_{what}_features", model=self.model_id, **{what: content(x)}
            ),
            compute=compute,
            encode=lambda v: np.asarray(v, np.float32).tobytes(),
            decode=lambda b: np.frombuffer(b, np.float32),
            batch_size=batch_size,
            desc=f"clue relevance (clip {what}s)",
        )
        return np.stack(rows)
