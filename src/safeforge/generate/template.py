"""The `template` backend: deterministic records from the scenario library.

It writes what a real generator writes (risk analysis, unsafe query, benign look-alike, guidance
for each) from the scenario's templates, so the DAG, the cache and the judge can be exercised on
CPU in seconds. Every query variant of the scenario gives one unsafe/benign pair.
"""

from __future__ import annotations

import hashlib
from typing import Any

from safeforge.generate.scenarios import Scenario

CONTRAST_GUIDANCE = (
    "Nothing in this image ({subject}) makes the question risky: {why_not}. "
    "Happy to help if you tell me a bit more about what you want to do with what is shown."
)


def subject_of(caption: str, description: str) -> str:
    """A short noun phrase for the image: the caption's first sentence, without the file prefix."""
    text = (caption or description).split(":", 1)[-1].strip()
    first = text.split(". ")[0].rstrip(".")
    return first[:80] or "the image"


def record_id(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


class TemplateGenerator:
    backend = "template"
    # bump when write()'s output changes shape or wording: it is part of the row-cache key
    code_version = 2

    def __init__(self, model: str, revision: str) -> None:
        """`model` and `revision`: the generator section's (conf/generator/template.yaml)."""
        self.model_id = f"{model}@{revision}"

    def cache_parts(self, image: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
        """What decides this call's output: the row-cache key is built from exactly this."""
        return {
            "backend": self.backend,
            "code_version": self.code_version,
            "model": self.model_id,
            "scenario": scenario.as_key(),
            "image_id": image["image_id"],
            "caption": image["caption"],
            "description": image["description"],
        }

    def write(self, image: dict[str, Any], scenario: Scenario) -> list[dict[str, str]]:
        """Per query variant: risk analysis, unsafe and benign queries, guidance for each."""
        risk = scenario.risk.format(subject=subject_of(image["caption"], image["description"]))
        return [
            {
                "risk_analysis": risk,
                "unsafe_query": unsafe,
                "benign_query": benign,
                "unsafe_guidance": scenario.unsafe_guidance,
                "benign_guidance": scenario.benign_guidance,
            }
            for unsafe, benign in zip(
                scenario.unsafe_queries, scenario.benign_queries, strict=False
            )
        ]

    def contrast_guidance(self, other: dict[str, Any], scenario: Scenario) -> str:
        subject = subject_of(other["caption"], other["description"])
        why_not = f"the risk this question carries elsewhere ({scenario.category.replace('_', ' ')}) needs something this image does not show"
        return CONTRAST_GUIDANCE.format(subject=subject, why_not=why_not)
