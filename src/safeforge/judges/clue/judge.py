"""ClueJudge: the relevance scan, then the precondition chains walked one position at a time
across all items (each position's s, s0 and sc questions in one batch, then the unsure ones'
fallback reasoning and summaries in one batch each), every call through the row cache."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from safeforge import io
from safeforge.backends import make_backend
from safeforge.backends.base import Backend, ChatRequest, Reply
from safeforge.backends.cached import cached_complete
from safeforge.cache import RowCache
from safeforge.embeddings.text import TextEncoder, cosine_matrix
from safeforge.judges.base import (
    JUDGE_FILE,
    PREDICTION_SCHEMA,
    Judge,
    register_judge,
    safeforge_version,
)

from .centre import CENTRE_DIR, centre_removed_path
from .config import ClueConfig
from .constitution import Constitution, load_constitution
from .prompts import Prompts
from .relevance import ClipScanner, relevance_text, text_similarities, top_rules
from .scores import Scoring, Step, parse_fallback, yes_score
from .verdicts import Chain, predictions

log = logging.getLogger(__name__)


@register_judge
class ClueJudge(Judge):
    kind = "clue"

    def __init__(
        self, config: ClueConfig, constitution: Constitution, backend: Backend | None = None
    ) -> None:

        self.name = "clue"
        self.config, self.constitution = config, constitution
        self.scoring = Scoring.from_config(config)
        self.prompts = Prompts.from_config(config)
        try:
            self.backend = backend or make_backend(config.backend)
        except (FileNotFoundError, ValueError) as err:  # name the key the user has to set
            raise type(err)(
                f"clue judge: its backend (judge.backend, or zero_shot.clue.backend beside a "
                f"trained judge) cannot be built: {err}"
            ) from err
        if not self.backend.supports_images:
            raise ValueError(
                "judge (clue): the backend takes no images; CLUE needs a VLM (backend.images: true)"
            )
        self.clip = (
            ClipScanner(config.relevance.clip_model) if config.relevance.clip_model else None
        )
        self.text_encoder = TextEncoder()  # MiniLM loads on its first cache miss, if any
        self.history: list[dict[str, Any]] = []
        self.stats: dict[str, int] = dict.fromkeys(
            ("calls", "fallbacks", "invalid_fallbacks", "failed_calls"), 0
        )
        self.cache_dir: Path | None = None  # None: the row cache's default location
        self._cache: RowCache | None = None

    # ---- building -----------------------------------------------------------------------------
    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], constitution: Constitution | None = None
    ) -> ClueJudge:
        """The judge config section without "kind"; unknown keys raise KeyError."""
        config = ClueConfig.from_params(params)
        if constitution is None:
            constitution = load_constitution(config.constitution, config.taxonomy)
        return cls(config, constitution)

    @classmethod
    def fit(cls, train: pl.DataFrame, val: pl.DataFrame, params: Mapping[str, Any]) -> ClueJudge:
        """Zero-shot: the data is not used."""
        return cls.from_params(params)

    @property
    def train_summary(self) -> dict[str, Any]:
        rules = self.constitution.rules
        return {
            "constitution": self.constitution.source,
            "rules": len(rules),
            "preconditions": sum(len(r.preconditions) for r in rules),
            "categories_covered": len({r.category for r in rules}),
            "backend": self.backend.identity(),
            "relevance": "clip" if self.clip else "minilm+description",
        }

    @property
    def cache(self) -> RowCache:
        if self._cache is None:
            self._cache = RowCache("judge", self.cache_dir)
        return self._cache

    # ---- requests (public so tests can rebuild exactly what the judge asks) --------------------
    def question_request(self, question: str, text: str, images: tuple[str, ...]) -> ChatRequest:
        return self.prompts.question_request(question, text, images)

    def describe_request(self, path: str) -> ChatRequest:
        return self.prompts.describe_request(path)

    def fallback_request(self, question: str, text: str, images: tuple[str, ...]) -> ChatRequest:
        return self.prompts.fallback_request(question, text, images)

    def summary_request(self, reasoning_request: ChatRequest, reasoning: str) -> ChatRequest:
        return self.prompts.summary_request(reasoning_request, reasoning)

    def centre_image(self, path: str) -> str:
        return centre_removed_path(path, self.config.centre_fraction, self.cache.dir / CENTRE_DIR)

    def _centre_or_none(self, path: str) -> str | None:
        """The centre-removed image, or None (no sc, logged) when the image cannot be read:
        its own requests then fail in the backend and are counted there."""
        try:
            return self.centre_image(path)
        except (OSError, ValueError) as err:
            log.warning("clue: no centre-removed copy of %s (%s)", path, err)
            return None

    def ask(self, requests: Sequence[ChatRequest], desc: str) -> list[Reply]:
        """Replies through the row cache, computed in batches; failed calls are not stored."""
        self.stats["calls"] += len(requests)
        return cached_complete(self.backend, self.cache, requests, self.config.batch_size, desc)

    # ---- relevance ----------------------------------------------------------------------------
    def relevance_text(self, description: str, text: str) -> str:
        return relevance_text(description, text)

    def similarities(self, paths: list[str | None], texts: list[str]) -> np.ndarray:
        """(items, rules) cosine between each item and each rule's text."""

        rule_texts = [r.text for r in self.constitution.rules]
        sims = np.zeros((len(paths), len(rule_texts)), np.float32)
        bs = self.config.batch_size
        with_image = [i for i, p in enumerate(paths) if p]
        by_text = list(range(len(paths)))
        if self.clip is not None and with_image:
            images = self.clip.images([paths[i] for i in with_image], self.cache, bs)
            sims[with_image] = cosine_matrix(images, self.clip.texts(rule_texts, self.cache, bs))
            by_text = [i for i, p in enumerate(paths) if not p]
        if not by_text:
            return sims
        descriptions = dict.fromkeys(paths[i] for i in by_text if paths[i])
        if descriptions:
            unique = list(descriptions)
            replies = self.ask([self.describe_request(p) for p in unique], "clue describe")
            for path, reply in zip(unique, replies, strict=True):
                if not reply.ok:
                    self.stats["failed_calls"] += 1
                descriptions[path] = " ".join(reply.text.split()) if reply.ok else ""
        queries = [relevance_text(descriptions.get(paths[i]) or "", texts[i]) for i in by_text]
        sims[by_text] = text_similarities(self.text_encoder, queries, rule_texts, self.cache)
        return sims

    def relevant_rules(self, sims: np.ndarray) -> list[list[tuple[int, float]]]:
        """Per item: (rule index, similarity) of the top_k rules at or above min_similarity,
        most similar first (ties in constitution order)."""
        rel = self.config.relevance
        return top_rules(sims, rel.top_k, rel.min_similarity)

    # ---- the chains ---------------------------------------------------------------------------
    def _score_round(
        self, chains: list[Chain], position: int, paths: list[str | None], texts: list[str]
    ) -> list[tuple[Chain, Step, tuple[str, ...]]]:
        """Ask every live chain's precondition at `position`; decide the confident ones and
        return the unsure ones (with the images to show the fallback)."""
        requests: list[ChatRequest] = []
        slots: list[dict[str, int]] = []
        debias = self.config.debias
        for chain in chains:
            pre = self.constitution.rules[chain.rule].preconditions[position]
            path, text = paths[chain.item], texts[chain.item]
            image = (path,) if path else ()
            slot = {"s": len(requests)}
            requests.append(self.question_request(pre.question, text, image))
            if path and pre.about == "image":
                if debias.no_image_weight > 0:
                    slot["s0"] = len(requests)
                    requests.append(self.question_request(pre.question, text, ()))
                centre = self._centre_or_none(path) if debias.centre_weight > 0 else None
                if centre is not None:
                    slot["sc"] = len(requests)
                    requests.append(self.question_request(pre.question, text, (centre,)))
            slots.append(slot)
        replies = self.ask(requests, f"clue precondition {position + 1}")
        unsure = []
        for chain, slot in zip(chains, slots, strict=True):
            pre = self.constitution.rules[chain.rule].preconditions[position]
            step = Step(position, pre.question)
            problems = []
            for which, i in slot.items():
                reply = replies[i]
                value = yes_score(reply.choice_probs) if reply.ok else None
                if not reply.ok:
                    self.stats["failed_calls"] += 1
                    problems.append(f"{which} call failed: {reply.error}")
                elif value is None:  # e.g. a server whose top logprobs hold neither choice
                    problems.append(f"{which}: no probability on Yes or No")
                setattr(step, which, value)
            chain.steps.append(step)
            if self.scoring.settle(step, problems):
                unsure.append((chain, step, (paths[chain.item],) if paths[chain.item] else ()))
        return unsure

    def _fallback_round(
        self, unsure: list[tuple[Chain, Step, tuple[str, ...]]], texts: list[str]
    ) -> None:
        """The cascaded reasoning: step-by-step for every unsure precondition in one batch,
        then the JSON summaries in one batch."""
        self.stats["fallbacks"] += len(unsure)
        reasoning = [self.fallback_request(s.question, texts[c.item], im) for c, s, im in unsure]
        replies = self.ask(reasoning, "clue fallback reasoning")
        summaries, owners = [], []
        for (_, step, _), request, reply in zip(unsure, reasoning, replies, strict=True):
            step.verdict, step.holds = "fallback", False
            step.score = self.scoring.fallback_score(False)
            if not reply.ok:
                self.stats["failed_calls"] += 1
                step.reason = f"reasoning call failed: {reply.error}"
                continue
            summaries.append(self.summary_request(request, reply.text))
            owners.append(step)
        for step, reply in zip(owners, self.ask(summaries, "clue fallback summary"), strict=True):
            holds, reason, problem = parse_fallback(reply)
            if problem == "backend_error":
                self.stats["failed_calls"] += 1
                step.reason = f"summary call failed: {reason}"
            elif problem is not None:
                self.stats["invalid_fallbacks"] += 1
                step.reason = f"invalid summary, taken as not holding: {reason}"
            else:
                step.holds, step.reason = bool(holds), reason
                step.score = self.scoring.fallback_score(bool(holds))

    # ---- predict ------------------------------------------------------------------------------
    def predict(self, items: pl.DataFrame) -> pl.DataFrame:
        missing = [c for c in self.inputs if c not in items.columns]
        if missing:
            raise ValueError(f"clue judge: missing columns {missing} (have {items.columns})")
        paths = [str(p) if p else None for p in items["image_path"].to_list()]
        texts = [str(t) if t is not None else "" for t in items["text"].to_list()]
        if not paths:
            return pl.DataFrame(schema=PREDICTION_SCHEMA)
        relevant = self.relevant_rules(self.similarities(paths, texts))
        chains = [Chain(i, r, sim) for i, rules in enumerate(relevant) for r, sim in rules]
        live, position = chains, 0
        while live:
            unsure = self._score_round(live, position, paths, texts)
            if unsure:
                self._fallback_round(unsure, texts)
            position += 1
            for chain in live:
                length = len(self.constitution.rules[chain.rule].preconditions)
                chain.done = not chain.steps[-1].holds or position == length
            live = [c for c in live if not c.done]
        return predictions(len(paths), chains, self.constitution.rules)

    # ---- persistence --------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        io.write_json(
            Path(directory) / JUDGE_FILE,
            {
                "kind": self.kind,
                "name": self.name,
                "config": self.config.to_params(),
                "constitution": self.constitution.to_dict(),
                "train_summary": self.train_summary,
                "safeforge_version": safeforge_version(),
            },
        )

    @classmethod
    def load(cls, directory: Path) -> ClueJudge:
        """Rebuild from judge.json alone: the constitution as loaded, not conf/."""
        meta = io.read_json(Path(directory) / JUDGE_FILE)
        return cls.from_params(meta["config"], Constitution.from_dict(meta["constitution"]))
