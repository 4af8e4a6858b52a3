"""The training loop: rows checked and encoded (unreadable or too long ones skipped and
counted), AdamW with cosine warmup and gradient accumulation, a history row per optimizer step,
and a teacher-forced val pass (loss and rating metrics) after each epoch."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import polars as pl
import torch
from tqdm import tqdm

from safeforge.judges.metrics import VAL_THRESHOLD, binary_metrics
from safeforge.judges.vlm.batch import load_image
from safeforge.judges.vlm.config import VlmConfig
from safeforge.judges.vlm.prompt import RATINGS

log = logging.getLogger(__name__)


class Trainee(Protocol):
    """What the loop needs of a judge (VlmJudge): the model, its batches and where it logs."""

    config: VlmConfig
    model: Any
    device: torch.device
    prefill_ids: list[int]
    history: list[dict[str, Any]]
    train_summary: dict[str, Any]

    def encode(self, image: Any, query: str, tail_ids: list[int]) -> dict[str, torch.Tensor]: ...
    def reply_ids(self, row: Mapping[str, Any]) -> list[int]: ...
    def train_batch(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]: ...
    def p_unsafe(self, logits: torch.Tensor) -> torch.Tensor: ...


TRAIN_COLUMNS = ("record_id", "image_path", "query", "label", "category")
TRAIN_COLUMNS += ("risk_analysis", "guidance")
HISTORY_KEYS = (
    "step",
    "epoch",
    "train_loss",
    "lr",
    "val_loss",
    "val_balanced_accuracy",
    "val_auroc",
)


def require_columns(df: pl.DataFrame, split: str) -> None:
    missing = [c for c in TRAIN_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"vlm judge: {split} frame lacks columns {missing} (have {df.columns})")


def empty_row() -> dict[str, Any]:
    return dict.fromkeys(HISTORY_KEYS)


def trainable_rows(
    judge: Trainee, df: pl.DataFrame, split: str
) -> tuple[list[dict[str, Any]], Counter]:
    """Rows ready to train on, and why the others were skipped (logged, counted)."""
    bad = sorted(set(df["label"].to_list()) - set(RATINGS))
    if bad:
        raise ValueError(f"vlm judge: {split} column 'label' must be safe/unsafe, got {bad[:5]}")
    keep, skipped = [], Counter()
    rows = df.select(TRAIN_COLUMNS).to_dicts()
    for row in tqdm(rows, desc=f"vlm {split} rows", unit="row"):
        try:
            image = load_image(row["image_path"], judge.config.max_image_side)
        except Exception as err:  # one bad image must not sink the fit
            skipped["unreadable image"] += 1
            log.warning(
                "vlm judge: skipping %s row %s: unreadable image %s (%s)",
                split,
                row["record_id"],
                row["image_path"],
                err,
            )
            continue
        # truncating would cut image tokens or the reply's end: skip instead
        n = judge.encode(image, row["query"], judge.reply_ids(row))["input_ids"].shape[1]
        if n > judge.config.max_seq_len:
            skipped["longer than max_seq_len"] += 1
            log.warning(
                "vlm judge: skipping %s row %s: %d tokens > max_seq_len %d",
                split,
                row["record_id"],
                n,
                judge.config.max_seq_len,
            )
            continue
        keep.append(row)
    return keep, skipped


def train_loop(judge: Trainee, train: pl.DataFrame, val: pl.DataFrame) -> None:
    """Fine-tune judge.model in place; fills judge.history and judge.train_summary."""
    from transformers import get_cosine_schedule_with_warmup

    cfg, started = judge.config, time.monotonic()
    rows, skipped_train = trainable_rows(judge, train, "train")
    val_rows, skipped_val = trainable_rows(judge, val, "val") if val.height else ([], Counter())
    if not rows:
        raise ValueError(
            f"vlm judge: no trainable train rows left (skipped: {dict(skipped_train)})"
        )
    batches_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    trainable = [p for p in judge.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * total), total)
    order = torch.Generator().manual_seed(cfg.seed)
    step, val_row = 0, empty_row()
    log.info(
        "vlm judge: %d train rows, %d steps of %d x %d",
        len(rows),
        total,
        cfg.batch_size,
        cfg.grad_accum,
    )
    for epoch in range(1, cfg.epochs + 1):
        judge.model.train()
        perm = torch.randperm(len(rows), generator=order).tolist()
        batches = [perm[i : i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)]
        groups = [batches[i : i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]
        for group in tqdm(groups, desc=f"vlm epoch {epoch}/{cfg.epochs}", unit="step"):
            losses = []
            for idx in group:
                out = judge.model(**judge.train_batch([rows[i] for i in idx]), use_cache=False)
                (out.loss / len(group)).backward()  # the group's mean: one step per group
                losses.append(out.loss.item())
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            row = empty_row() | {"step": step, "epoch": epoch, "lr": lr}
            judge.history.append(row | {"train_loss": round(sum(losses) / len(losses), 6)})
        if val_rows:
            val_row = empty_row() | {"step": step, "epoch": epoch} | validate(judge, val_rows)
            judge.history.append(val_row)
            log.info("vlm judge: epoch %d val %s", epoch, val_row)
    judge.model.eval()
    trained = [r for r in judge.history if r["train_loss"] is not None]
    judge.train_summary = {
        "finetune": cfg.finetune,
        "device": str(judge.device),
        "dtype": str(next(judge.model.parameters()).dtype).removeprefix("torch."),
        "steps": step,
        "epochs": cfg.epochs,
        "rows_trained": len(rows),  # after skips; the stage reports its input
        "rows_validated": len(val_rows),
        "skipped": {"train": dict(skipped_train), "val": dict(skipped_val)},
        "final_loss": trained[-1]["train_loss"],
        "trainable_parameters": sum(p.numel() for p in trainable),
        "total_parameters": sum(p.numel() for p in judge.model.parameters()),
        "val_loss": val_row["val_loss"],
        "val_balanced_accuracy": val_row["val_balanced_accuracy"],
        "val_auroc": val_row["val_auroc"],
        "train_seconds": round(time.monotonic() - started, 1),
    }


@torch.no_grad()
def validate(judge: Trainee, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Token-weighted val loss and the rating metrics, from one teacher-forced pass: the
    logits just before the rating token see exactly prompt + prefill, as scoring does."""
    judge.model.eval()
    loss_sum, tokens, ps = 0.0, 0, []
    for start in range(0, len(rows), judge.config.batch_size):
        batch = judge.train_batch(rows[start : start + judge.config.batch_size])
        out = judge.model(**batch, use_cache=False)
        labels = batch["labels"]
        n = int((labels[:, 1:] != -100).sum())  # the model's loss is the mean over these
        loss_sum, tokens = loss_sum + out.loss.item() * n, tokens + n
        first = (labels != -100).int().argmax(dim=1)  # first reply token per row
        at = first + len(judge.prefill_ids) - 1  # the position that predicts the rating
        ps.append(judge.p_unsafe(out.logits[torch.arange(len(at)), at]).cpu())
    judge.model.train()
    m = binary_metrics([r["label"] for r in rows], torch.cat(ps).numpy(), VAL_THRESHOLD)
    return {
        "val_loss": round(loss_sum / max(tokens, 1), 6),
        "val_balanced_accuracy": m["balanced_accuracy"],
        "val_auroc": m["auroc"],
    }
