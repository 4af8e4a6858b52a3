"""From precondition chains to predictions: a rule is violated when its whole chain holds, an
item's p_unsafe is the max over its checked rules of the min q over the preconditions asked,
its category that of the violated rule scoring highest, and its rationale the steps behind it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from safeforge.judges.base import PREDICTION_SCHEMA

from .constitution import Rule
from .scores import Step


@dataclass
class Chain:
    """One relevant rule walked for one item (indices into the items and the rules)."""

    item: int
    rule: int
    similarity: float
    steps: list[Step] = field(default_factory=list)
    done: bool = False


def rule_outcome(steps: Sequence[Step], chain_length: int) -> tuple[bool, float]:
    """(violated, score): violated when every precondition was asked and holds; the score is
    the min q over the preconditions asked."""
    violated = len(steps) == chain_length and all(s.holds for s in steps)
    return violated, min(s.score for s in steps)


def predictions(n: int, chains: Sequence[Chain], rules: Sequence[Rule]) -> pl.DataFrame:
    """PREDICTION_SCHEMA rows for items 0..n-1 from their finished chains."""
    by_item: list[list[Chain]] = [[] for _ in range(n)]
    for chain in chains:
        by_item[chain.item].append(chain)
    p_unsafe, category, rationale = [], [], []
    for item_chains in by_item:
        if not item_chains:
            p_unsafe.append(0.0)
            category.append("")
            rationale.append("safe: no rule of the constitution is relevant to this item")
            continue
        outcomes = []
        for chain in item_chains:
            rule = rules[chain.rule]
            violated, score = rule_outcome(chain.steps, len(rule.preconditions))
            outcomes.append((violated, score, rule, chain))
        p_unsafe.append(max(score for _, score, _, _ in outcomes))
        violated = [o for o in outcomes if o[0]]
        if violated:
            best = max(violated, key=lambda o: o[1])  # first in scan order on ties
            rule, chain = best[2], best[3]
            category.append(rule.category)
            others = [o[2].id for o in violated if o is not best]
            text = (
                f"unsafe: violates {rule.id} ({rule.category}; relevance "
                f"{chain.similarity:.3f}): {rule.text} Preconditions: "
                + "; ".join(s.describe() for s in chain.steps)
            )
            if others:
                text += f". Also violated: {', '.join(others)}"
        else:
            category.append("")
            text = f"safe: {len(outcomes)} relevant rule(s) checked, none violated. " + " | ".join(
                f"{rule.id} (relevance {chain.similarity:.3f}): "
                + "; ".join(s.describe() for s in chain.steps)
                for _, _, rule, chain in outcomes
            )
        rationale.append(text)
    return pl.DataFrame(
        {"p_unsafe": p_unsafe, "pred_category": category, "rationale": rationale},
        schema=PREDICTION_SCHEMA,
    )
