"""ProbeJudge: the CPU default judge, a small torch head over frozen embeddings.

Two heads when the training rows include the augment stage's variants (a `variant_kind`
column): the typed head, trained on the original records, and the reader, trained to say
whether the text in the image makes the request unsafe (positives: variants whose rendered
request is unsafe; negatives: safe variants and every original). P(unsafe) is the larger of
the two. Why not one head on all rows: measured (benchmarks/typographic_transfer.py), one head
learned that a harmful request lives in the image text, and called the test split's unsafe
photos safe (own_test unsafe recall 0.93 -> 0.51). Why the max, not a noisy-OR: the reader's
small doubts about every photo (0.05-0.1) pushed borderline typed scores over the threshold.

Features: image_emb, description_emb, query_emb, description*query and their cosine. The
product and cosine let the head score the image-query *pair*, which is what decides safety, not
the query alone. The whole vector is standardised with train mean/std (saved with the weights):
standardising only image_emb left the cosine (spread ~0.4) and the product (~1/384 per dim)
tiny beside 1024 unit-variance image dims, and the head memorised image noise instead.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from safeforge import io
from safeforge.config import from_section
from safeforge.determinism import fixed_threads
from safeforge.embeddings.features import EMB_COLUMNS
from safeforge.judges.base import (
    JUDGE_FILE,
    PREDICTION_SCHEMA,
    Judge,
    register_judge,
    safeforge_version,
)
from safeforge.judges.metrics import VAL_THRESHOLD, binary_metrics
from safeforge.labels import LABELS

log = logging.getLogger(__name__)
WEIGHTS_FILE = "model.safetensors"
READER_DIR = "reader"  # the reader head, saved as a probe judge of its own beside the typed one
VARIANT_COLUMN = "variant_kind"  # set on the augment stage's rows, null on original records
_PREDICT_CHUNK = 8192  # rows per forward pass, bounds memory on large frames
TRAIN_THREADS = 1  # fixed, so the weights do not depend on the machine's core count


@dataclass
class ProbeConfig:
    """Every value comes from conf/judge/probe.yaml; the fields only type it (no defaults here)."""

    hidden: int
    dropout: float
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    seed: int
    patience: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ProbeConfig:
        """The `judge` section without "kind"; a key missing or misspelt raises KeyError."""
        return from_section(cls, "judge (probe)", params)


def _matrix(df: pl.DataFrame, col: str, dim: int | None) -> np.ndarray:
    """A (rows, dim) float32 matrix from a list/array column; ValueError naming `col` if bad."""
    if col not in df.columns:
        raise ValueError(f"probe judge: missing column {col!r} (have {df.columns})")
    s = df[col]
    if isinstance(s.dtype, pl.Array):
        s = s.cast(pl.List(s.dtype.inner))
    if not isinstance(s.dtype, pl.List):
        raise ValueError(f"probe judge: column {col!r} must be a list of floats, got {s.dtype}")
    if s.null_count():
        raise ValueError(f"probe judge: column {col!r} has {s.null_count()} null rows")
    lengths = sorted(s.list.len().unique().to_list())
    d = dim if dim is not None else (lengths[0] if lengths else 0)
    if lengths not in ([], [d]) or d <= 0:
        want = dim if dim is not None else "one common length > 0"
        raise ValueError(f"probe judge: column {col!r} has vector lengths {lengths}, want {want}")
    x = s.explode().cast(pl.Float32).to_numpy().reshape(df.height, d)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"probe judge: column {col!r} has NaN/inf (or null) values")
    return np.array(x, dtype=np.float32)  # a writable copy: torch refuses read-only views


def _require_targets(df: pl.DataFrame) -> None:
    for c in ("label", "category"):
        if c not in df.columns:
            raise ValueError(f"probe judge: missing column {c!r} for training")


def _head(n_in: int, n_out: int, cfg: ProbeConfig) -> nn.Module:
    return nn.Sequential(
        nn.Linear(n_in, cfg.hidden),
        nn.GELU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, n_out),
    )


@register_judge
class ProbeJudge(Judge):
    kind = "probe"
    inputs = EMB_COLUMNS

    def __init__(
        self,
        config: ProbeConfig,
        categories: list[str],
        dims: dict[str, int],
        mean: torch.Tensor,
        std: torch.Tensor,
        model: nn.Module,
    ) -> None:
        self.name = "probe"
        self.config, self.categories, self.dims = config, categories, dims
        self.mean, self.std, self.model = mean, std, model.eval()
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.selected_on = "val_loss"
        self.stats: dict[str, int] = {}
        self.reader: ProbeJudge | None = None
        self.reads_query = True

    @property
    def train_summary(self) -> dict[str, Any]:
        best = self.history[self.best_epoch - 1] if self.best_epoch else None
        summary = {
            "epochs_run": len(self.history),
            "best_epoch": self.best_epoch,
            "selected_on": self.selected_on,
            "best": best,
        }
        if self.reader is not None:
            reader = self.reader.train_summary
            summary["reader"] = {k: reader[k] for k in ("epochs_run", "best_epoch", "best")}
        return summary

    # ---- features -------------------------------------------------------------------------
    @staticmethod
    def _raw_features(
        df: pl.DataFrame, dims: dict[str, int] | None, reads_query: bool = True
    ) -> tuple[torch.Tensor, dict[str, int]]:
        """Unstandardised features and the input dims; `dims` None (fit) takes them from `df`.
        `reads_query` False: the query is zeroed (the reader judges the image's text alone)."""
        img, d, q = (
            torch.from_numpy(_matrix(df, c, dims[c] if dims else None)) for c in EMB_COLUMNS
        )
        found = {c: int(t.shape[1]) for c, t in zip(EMB_COLUMNS, (img, d, q), strict=True)}
        if d.shape[1] != q.shape[1]:
            raise ValueError(
                f"probe judge: description_emb and query_emb dims differ "
                f"({d.shape[1]} vs {q.shape[1]})"
            )
        if not reads_query:
            q = torch.zeros_like(q)
        cos = nn.functional.cosine_similarity(d, q, dim=1, eps=1e-8).unsqueeze(1)
        return torch.cat([img, d, q, d * q, cos], dim=1), found

    def _features(self, df: pl.DataFrame) -> torch.Tensor:
        return (self._raw_features(df, self.dims, self.reads_query)[0] - self.mean) / self.std

    def _targets(self, df: pl.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        _require_targets(df)
        labels = df["label"].to_list()
        bad = sorted({str(v) for v in labels} - set(LABELS))
        if bad:
            raise ValueError(f"probe judge: column 'label' must be 'safe'/'unsafe', got {bad[:5]}")
        index = {c: i for i, c in enumerate(self.categories)}
        # categories unseen in train (only possible in val) are ignored by the CE term
        cats = [index.get(c, -100) for c in df["category"].fill_null("none").to_list()]
        y = torch.tensor([v == "unsafe" for v in labels], dtype=torch.float32)
        return y, torch.tensor(cats, dtype=torch.long)

    # ---- training -------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, train: pl.DataFrame, val: pl.DataFrame, params: Mapping[str, Any] | ProbeConfig
    ) -> ProbeJudge:
        """The typed head on the original rows; with variant rows, the reader too (module doc).
        val holds originals only, so the reader, which has no held-out rows of its kind, is
        chosen on train loss."""
        config = params if isinstance(params, ProbeConfig) else ProbeConfig.from_params(params)
        if VARIANT_COLUMN not in train.columns:
            return cls._fit_head(train, val, config)
        is_variant = pl.col(VARIANT_COLUMN).is_not_null()
        originals, variants = train.filter(~is_variant), train.filter(is_variant)
        judge = cls._fit_head(originals, val, config)
        if variants.height:
            negatives = originals.with_columns(label=pl.lit("safe"))
            reader_rows = pl.concat([variants, negatives], how="diagonal_relaxed")
            log.info("probe judge: reader head on %d variant rows", variants.height)
            # blind to the typed text: it judges what the image says, so a new instruction
            # beside a typeset request (as in FigStep) does not move it
            judge.reader = cls._fit_head(reader_rows, val.clear(), config, reads_query=False)
        return judge

    @classmethod
    def _fit_head(
        cls, train: pl.DataFrame, val: pl.DataFrame, config: ProbeConfig, reads_query: bool = True
    ) -> ProbeJudge:
        """Train with AdamW on minibatches; keep the epoch with the best val (else train) loss."""
        if train.height == 0:
            raise ValueError("probe judge: empty training frame")
        _require_targets(train)
        # one thread: a gradient is a sum over the batch, and torch splits it across its
        # threads, so the saved weights would change with the core count (determinism.py)
        with fixed_threads(TRAIN_THREADS):
            x, dims = cls._raw_features(train, None, reads_query)
            # clamp: a constant feature (e.g. a dead image dim) must not divide by zero
            mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
            cats = sorted(set(train["category"].fill_null("none").to_list()))
            # fork_rng: seed init, shuffling and dropout without disturbing the caller's RNG
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                head = _head(x.shape[1], 1 + len(cats), config)
                judge = cls(config, cats, dims, mean, std, head)
                judge.reads_query = reads_query
                judge._train(train, val)
        return judge

    def _loss(self, out: torch.Tensor, y: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(out[:, 0], y)
        if (cat >= 0).any():
            bce = bce + 0.5 * nn.functional.cross_entropy(out[:, 1:], cat, ignore_index=-100)
        return bce

    def _train(self, train: pl.DataFrame, val: pl.DataFrame) -> None:
        cfg = self.config
        x, (y, cat) = self._features(train), self._targets(train)
        has_val = val.height > 0
        if has_val:
            xv, (yv, catv) = self._features(val), self._targets(val)
        else:
            log.warning("probe judge: empty validation frame; selecting the epoch on train loss")
            self.selected_on = "train_loss"
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, since = float("inf"), copy.deepcopy(self.model.state_dict()), 0
        for epoch in range(1, cfg.epochs + 1):
            self.model.train()
            total = 0.0
            for idx in torch.randperm(x.shape[0]).split(cfg.batch_size):
                loss = self._loss(self.model(x[idx]), y[idx], cat[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * idx.numel()
            row: dict[str, Any] = {
                "step": epoch * math.ceil(x.shape[0] / cfg.batch_size),  # optimizer steps so far
                "epoch": epoch,
                "train_loss": round(total / x.shape[0], 6),
                "val_loss": None,
                "val_balanced_accuracy": None,
            }
            if has_val:
                self.model.eval()
                with torch.no_grad():
                    out = self.model(xv)
                row["val_loss"] = round(float(self._loss(out, yv, catv)), 6)
                p = torch.sigmoid(out[:, 0]).numpy()
                row["val_balanced_accuracy"] = binary_metrics(
                    val["label"].to_list(), p, VAL_THRESHOLD
                )["balanced_accuracy"]
            self.history.append(row)
            score = row["val_loss"] if has_val else row["train_loss"]
            if score < best:
                best, self.best_epoch, since = score, epoch, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                since += 1
                if since >= cfg.patience:
                    break
        self.model.load_state_dict(best_state)
        self.model.eval()
        log.info(
            "probe judge: best epoch %s of %d by %s=%.4f",
            self.best_epoch,
            len(self.history),
            self.selected_on,
            best,
        )

    # ---- inference and persistence --------------------------------------------------------
    def predict(self, items: pl.DataFrame) -> pl.DataFrame:
        p, names = self._scores(items)
        if self.reader is None:
            why = [
                f"probe: p_unsafe={v:.2f}, nearest category={n}"
                for v, n in zip(p, names, strict=True)
            ]
        else:
            read, _ = self.reader._scores(items)
            typed, p = p, np.maximum(p, read)  # unsafe if either says so
            why = [
                f"probe: p_unsafe={v:.2f} (typed request {t:.2f}, text in image {r:.2f}), "
                f"nearest category={n}"
                for v, t, r, n in zip(p, typed, read, names, strict=True)
            ]
        return pl.DataFrame(
            {"p_unsafe": p, "pred_category": names, "rationale": why}, schema=PREDICTION_SCHEMA
        )

    def _scores(self, items: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
        """This head's P(unsafe) and nearest category per item."""
        ps, cs = [], []
        for start in range(0, max(items.height, 1), _PREDICT_CHUNK):
            chunk = items.slice(start, _PREDICT_CHUNK)  # one pass even when empty: validates
            with torch.no_grad():
                out = self.model(self._features(chunk))
            ps.append(torch.sigmoid(out[:, 0]).double().numpy())
            cs.append(out[:, 1:].argmax(1).numpy())
        p, c = np.concatenate(ps), np.concatenate(cs)
        return p, [self.categories[i] for i in c]

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        if self.reader is not None:
            self.reader.save(directory / READER_DIR)
        tensors = {f"head.{k}": v.contiguous() for k, v in self.model.state_dict().items()}
        tensors |= {"feature_mean": self.mean.contiguous(), "feature_std": self.std.contiguous()}
        with io.atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp))
        # judge.json last: a folder with judge.json always has its weights beside it
        io.write_json(
            directory / JUDGE_FILE,
            {
                "kind": self.kind,
                "name": self.name,
                "config": asdict(self.config),
                "categories": self.categories,
                "input_dims": self.dims,
                "best_epoch": self.best_epoch,
                "selected_on": self.selected_on,
                "reads_query": self.reads_query,
                "history": self.history,
                "safeforge_version": safeforge_version(),
            },
        )

    @classmethod
    def load(cls, directory: Path) -> ProbeJudge:
        meta = io.read_json(Path(directory) / JUDGE_FILE)
        known = {f.name for f in fields(ProbeConfig)}
        cfg = ProbeConfig.from_params({k: v for k, v in meta["config"].items() if k in known})
        t = load_file(str(Path(directory) / WEIGHTS_FILE))
        dims, cats = {k: int(v) for k, v in meta["input_dims"].items()}, list(meta["categories"])
        model = _head(dims["image_emb"] + 3 * dims["query_emb"] + 1, 1 + len(cats), cfg)
        model.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("head.")})
        judge = cls(cfg, cats, dims, t["feature_mean"], t["feature_std"], model)
        judge.history, judge.best_epoch = meta.get("history", []), meta.get("best_epoch")
        judge.selected_on = meta.get("selected_on", "val_loss")
        judge.reads_query = meta.get("reads_query", True)
        if (Path(directory) / READER_DIR / JUDGE_FILE).is_file():
            judge.reader = cls.load(Path(directory) / READER_DIR)
        return judge
