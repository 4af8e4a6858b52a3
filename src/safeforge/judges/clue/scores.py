"""The arithmetic of one precondition: the token-probability score s, the debiased score D, the
decision it makes (holds, rejects, unsure), the [0, 1] score q, and the fallback's summary.
Pure functions of numbers and replies; the formulas are in the package docstring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from safeforge.backends.base import Reply
from safeforge.chain.replies import ReplyProblem, check_reply

from .config import ClueConfig
from .prompts import CHOICES, FALLBACK_SCHEMA

NEUTRAL = 0.5  # the "no information" prior: request questions and items without an image


def yes_score(probs: Mapping[str, float] | None) -> float | None:
    """s = P(Yes) / (P(Yes) + P(No)); None when the reply carries no probability for them."""
    if not probs:
        return None
    yes, no = probs.get(CHOICES[0]), probs.get(CHOICES[1])
    if yes is None or no is None or not np.isfinite(yes + no) or yes + no <= 0:
        return None
    return float(yes) / float(yes + no)


@dataclass
class Step:
    """One precondition asked about one item: its scores and what was decided."""

    index: int
    question: str
    s: float | None = None
    s0: float | None = None
    sc: float | None = None
    debiased: float | None = None
    verdict: str = ""  # holds | rejects | fallback | midpoint
    holds: bool = False
    score: float = 0.0  # q in [0, 1]
    reason: str = ""

    def describe(self) -> str:
        nums = " ".join(
            f"{k}={v:.3f}"
            for k, v in (("s", self.s), ("s0", self.s0), ("sc", self.sc), ("D", self.debiased))
            if v is not None
        )
        what = "holds" if self.holds else "does not hold"
        detail = f"{self.verdict}: {self.reason}" if self.reason else self.verdict
        return f'[{self.index + 1}] "{self.question}" {what} ({nums}{"; " if nums else ""}{detail})'


@dataclass(frozen=True)
class Scoring:
    """The debiasing, the confidence thresholds and the [0, 1] precondition score."""

    # from conf/judge/clue.yaml through ClueConfig (`from_config`): no defaults here
    no_image_weight: float
    centre_weight: float
    hold: float
    reject: float
    fallback: bool

    @classmethod
    def from_config(cls, c: ClueConfig) -> Scoring:
        return cls(
            c.debias.no_image_weight,
            c.debias.centre_weight,
            c.hold_threshold,
            c.reject_threshold,
            c.fallback.enabled,
        )

    @property
    def midpoint(self) -> float:
        return (self.hold + self.reject) / 2

    def debiased(self, s: float, s0: float | None = None, sc: float | None = None) -> float:
        """D in [-1, 1] from s, the no-image score s0 and the centre-removed score sc (None:
        not asked; s0 None means the neutral prior)."""
        w = self.no_image_weight
        prior = NEUTRAL if s0 is None else w * s0 + (1 - w) * NEUTRAL
        u = _lift(s, prior)
        if u < self.reject or sc is None or self.centre_weight == 0:
            return float(u)
        return float(min(1.0, max(u, self.centre_weight * (s - sc))))

    def decide(self, d: float) -> str:
        """ "holds", "rejects" or "unsure" (the fallback decides)."""
        if d > self.hold:
            return "holds"
        if d < self.reject:
            return "rejects"
        return "unsure"

    def score(self, d: float) -> float:
        """q in [0, 1]: piecewise linear, q(-1) = 0, q(midpoint) = 0.5, q(1) = 1."""
        d, m = min(1.0, max(-1.0, d)), self.midpoint
        if d <= m:
            return 0.5 * (d + 1) / (m + 1) if m > -1 else 0.0
        return 0.5 + 0.5 * (d - m) / (1 - m)

    def fallback_score(self, holds: bool) -> float:
        """The fixed q of a fallback verdict: q(hold) >= 0.5 > q(reject)."""
        return self.score(self.hold if holds else self.reject)

    def settle(self, step: Step, problems: Sequence[str]) -> bool:
        """Decide `step` from its scores s, s0, sc (`problems`: why some score is missing, which
        makes it unsure). True when it is unsure and the fallback is to decide it."""
        if problems:
            step.reason = "score unavailable (" + "; ".join(problems) + ")"
            decision = "unsure"
        else:
            step.debiased = self.debiased(step.s, step.s0, step.sc)  # type: ignore[arg-type]
            decision = self.decide(step.debiased)
        if decision != "unsure":
            step.verdict, step.holds = "token probability", decision == "holds"
            step.score = self.score(step.debiased)  # type: ignore[arg-type]
        elif self.fallback:
            return True
        elif step.debiased is None:
            step.verdict, step.holds = "no fallback", False
            step.score = self.fallback_score(False)
        else:
            step.verdict = "no fallback, midpoint"
            step.holds = step.debiased >= self.midpoint
            step.score = self.score(step.debiased)
        return False


def _lift(s: float, prior: float) -> float:
    """The share of the prior the image takes away (< 0) or of the headroom above it it adds."""
    if s < prior:
        return (s - prior) / prior
    return (s - prior) / (1 - prior) if prior < 1 else 0.0


def parse_fallback(reply: Reply) -> tuple[bool | None, str, str | None]:
    """(holds, reason, problem) from the JSON summary; holds None and a problem when the reply
    is not {"holds": bool, "reason": str} (problem "backend_error" when the call failed)."""
    try:
        value = check_reply(reply, FALLBACK_SCHEMA)
    except ReplyProblem as err:
        return None, f"{err.reason}: {err.detail}", err.reason
    return bool(value["holds"]), " ".join(str(value["reason"]).split()), None
