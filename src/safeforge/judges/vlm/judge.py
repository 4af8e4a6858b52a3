"""VlmJudge: fit (load, prepare, train), predict (rating-token probability, optionally the
generated JSON for category and rationale), save and load.

Scoring reads the rating from probabilities, not from sampled text: the reply is prefilled with
`{"rating": "` and p_unsafe = P(Unsafe) / (P(Safe) + P(Unsafe)) over the first token of each
word, so every item gets a calibrated score even when the generated JSON is broken. With
`generate: true` the rest of the JSON is generated greedily for category and rationale;
replies that do not validate against the schema are counted in `stats`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import torch
from PIL import Image

from safeforge import io
from safeforge.judges.base import (
    JUDGE_FILE,
    PREDICTION_SCHEMA,
    Judge,
    register_judge,
    safeforge_version,
)
from safeforge.judges.vlm import batch as batching
from safeforge.judges.vlm.config import VlmConfig, resolve_device, resolve_dtype
from safeforge.judges.vlm.model import (
    load_model,
    load_processor,
    load_weights,
    model_folder,
    prepare_for_training,
    save_weights,
)
from safeforge.judges.vlm.prompt import (
    NONE_CATEGORY,
    PREFILL,
    build_messages,
    parse_reply,
    prompt_text,
    rating_token_ids,
    reply_schema,
    target_reply,
    token_ids,
    turn_end,
)
from safeforge.judges.vlm.train import require_columns, train_loop

log = logging.getLogger(__name__)


@register_judge
class VlmJudge(Judge):
    kind = "vlm"

    def __init__(
        self, config: VlmConfig, categories: list[str], model: Any, processor: Any
    ) -> None:
        self.name = f"vlm:{Path(config.model).name}"
        self.config, self.categories = config, categories
        self.model, self.processor = model, processor
        self.tokenizer = processor.tokenizer
        self.device = next(model.parameters()).device
        self.schema = reply_schema(categories)
        self.prefill_ids = token_ids(self.tokenizer, PREFILL)
        self.safe_id, self.unsafe_id = rating_token_ids(self.tokenizer)
        self.turn_end = turn_end(processor, categories)
        self.history: list[dict[str, Any]] = []
        self.train_summary: dict[str, Any] = {}
        self.stats = {"generations": 0, "invalid_generations": 0}

    # ---- encoding -----------------------------------------------------------------------
    def encode(
        self, image: Image.Image, query: str, tail_ids: list[int]
    ) -> dict[str, torch.Tensor]:
        """One row, unpadded: the prompt for `query` with `tail_ids` (the reply, or the
        prefill) appended; `labels` marks the tail alone (-100 on the prompt)."""
        prompt = prompt_text(self.processor, build_messages(query, self.categories))
        return batching.encode(self.processor, prompt, image, tail_ids)

    def collate(
        self, rows: Sequence[dict[str, torch.Tensor]], side: str
    ) -> dict[str, torch.Tensor]:
        """Rows padded on `side` (right for training, left for scoring) into one batch."""
        return batching.collate(rows, side, self.tokenizer.pad_token_id)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batching.to_device(batch, self.device, next(self.model.parameters()).dtype)

    def reply_ids(self, row: Mapping[str, Any]) -> list[int]:
        """The target reply's tokens for one training row, ending with the template's turn end."""
        reply = target_reply(row, self.config.rationale_max_chars)
        return token_ids(self.tokenizer, reply + self.turn_end)

    def train_batch(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Training rows (TRAIN_COLUMNS) -> model inputs with `labels` on the reply tokens
        (the JSON and the template's end of turn); -100 on prompt, image and padding."""
        encoded = [
            self.encode(
                batching.load_image(r["image_path"], self.config.max_image_side),
                r["query"],
                self.reply_ids(r),
            )
            for r in rows
        ]
        return self._to_device(self.collate(encoded, side="right"))

    def p_unsafe(self, logits: torch.Tensor) -> torch.Tensor:
        """P(Unsafe) / (P(Safe) + P(Unsafe)) from next-token logits (rows, vocab): the softmax
        normaliser cancels, so it is the sigmoid of the logit difference (no 0/0 underflow)."""
        logits = logits.double()
        return torch.sigmoid(logits[:, self.unsafe_id] - logits[:, self.safe_id])

    # ---- training -----------------------------------------------------------------------
    @classmethod
    def fit(cls, train: pl.DataFrame, val: pl.DataFrame, params: Mapping[str, Any]) -> VlmJudge:
        """Supervised fine-tuning on train; val loss and rating metrics after each epoch."""
        cfg = VlmConfig.from_params(params)
        folder = model_folder(cfg.model)
        require_columns(train, "train")
        if val.height:
            require_columns(val, "val")
        if train.height == 0:
            raise ValueError("vlm judge: empty training frame")
        categories = sorted(set(train["category"].drop_nulls().to_list()) | {NONE_CATEGORY})
        device = resolve_device(cfg.device)
        if cfg.finetune == "full" and resolve_dtype(cfg.dtype, device) != torch.float32:
            log.warning(
                "vlm judge: full fine-tuning in half precision: AdamW steps of lr %g are below "
                "bf16 resolution for most weights and are lost; prefer finetune=lora or "
                "dtype=float32",
                cfg.lr,
            )
        devices = []
        if device.type == "cuda":
            devices = [device.index if device.index is not None else torch.cuda.current_device()]
        # fork_rng: seeded adapter init, shuffling and dropout, without touching the caller's RNG
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            processor = load_processor(folder, cfg.trust_remote_code)
            model = prepare_for_training(load_model(folder, cfg, device), cfg)
            judge = cls(cfg, categories, model, processor)
            train_loop(judge, train, val)
        return judge

    # ---- scoring ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, items: pl.DataFrame) -> pl.DataFrame:
        """p_unsafe from the rating token's probabilities; with `generate`, category and
        rationale from the greedy JSON reply ("" for both when it is not valid JSON)."""
        missing = [c for c in self.inputs if c not in items.columns]
        if missing:
            raise ValueError(f"vlm judge: missing columns {missing} (have {items.columns})")
        nulls = items.filter(pl.col("image_path").is_null() | pl.col("text").is_null()).height
        if nulls:
            raise ValueError(f"vlm judge: {nulls} items have no image_path or text")
        self.model.eval()
        ps, cats, whys = [], [], []
        rows = items.select(self.inputs).to_dicts()
        for start in range(0, len(rows), self.config.batch_size):
            p, c, w = self._predict_batch(rows[start : start + self.config.batch_size])
            ps += p
            cats += c
            whys += w
        return pl.DataFrame(
            {"p_unsafe": ps, "pred_category": cats, "rationale": whys}, schema=PREDICTION_SCHEMA
        )

    def _predict_batch(self, rows: Sequence[dict[str, Any]]) -> tuple[list, list, list]:
        encoded = []
        for r in rows:
            try:
                image = batching.load_image(r["image_path"], self.config.max_image_side)
            except Exception as err:  # name the file: scoring has no row to skip to
                raise ValueError(f"vlm judge: cannot read image {r['image_path']}: {err}") from err
            enc = self.encode(image, r["text"], self.prefill_ids)
            del enc["labels"]
            encoded.append(enc)
        batch = self._to_device(self.collate(encoded, side="left"))
        if not self.config.generate:
            logits = self.model(**batch, logits_to_keep=1).logits[:, -1]
            return self.p_unsafe(logits).tolist(), [""] * len(rows), [""] * len(rows)
        out = self.model.generate(
            **batch,
            max_new_tokens=self.config.max_new_tokens,
            do_sample=False,  # greedy: one reply per item, reproducible
            temperature=None,
            top_p=None,
            top_k=None,
            repetition_penalty=1.0,  # Qwen2.5-VL's generation_config sets 1.05
            pad_token_id=self.tokenizer.pad_token_id,
            output_logits=True,  # raw logits of the first new token: the rating
            return_dict_in_generate=True,
        )
        p = self.p_unsafe(out.logits[0]).tolist()
        new = out.sequences[:, batch["input_ids"].shape[1] :]
        cats, whys = [], []
        for ids in new.tolist():
            text = PREFILL + self.tokenizer.decode(ids, skip_special_tokens=True)
            reply = parse_reply(text, self.schema)
            self.stats["generations"] += 1
            if reply is None:
                self.stats["invalid_generations"] += 1
                log.debug("vlm judge: invalid reply %r", text)
                cats.append("")
                whys.append("")
            else:
                cats.append(reply["category"])
                whys.append(reply["rationale"])
        return p, cats, whys

    # ---- persistence --------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        save_weights(self.model, self.processor, directory, self.config.finetune)
        # judge.json last: a folder with judge.json always has its weights beside it
        io.write_json(
            directory / JUDGE_FILE,
            {
                "kind": self.kind,
                "name": self.name,
                "config": asdict(self.config),
                "categories": self.categories,
                "history": self.history,
                "train_summary": self.train_summary,
                "safeforge_version": safeforge_version(),
            },
        )

    @classmethod
    def load(cls, directory: Path) -> VlmJudge:
        directory = Path(directory)
        meta = io.read_json(directory / JUDGE_FILE)
        cfg = VlmConfig.from_params(meta["config"])
        model, processor = load_weights(directory, cfg)
        judge = cls(cfg, list(meta["categories"]), model.eval(), processor)
        judge.history, judge.train_summary = meta.get("history", []), meta.get("train_summary", {})
        return judge
