"""The scenario library (conf/scenarios/) and its checks against the taxonomy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REQUIRED = (
    "id",
    "category",
    "triggers",
    "unsafe_queries",
    "benign_queries",
    "risk",
    "unsafe_guidance",
    "benign_guidance",
)


@dataclass(frozen=True)
class Scenario:
    id: str
    category: str
    triggers: tuple[str, ...]
    unsafe_queries: tuple[str, ...]
    benign_queries: tuple[str, ...]
    risk: str
    unsafe_guidance: str
    benign_guidance: str
    image_dependent: bool = False

    def as_key(self) -> dict[str, Any]:
        """Everything that decides what this scenario generates: part of the row-cache key."""
        return {k: getattr(self, k) for k in (*REQUIRED, "image_dependent")}


def load_library(
    entries: Sequence[Mapping[str, Any]], categories: Mapping[str, Any]
) -> list[Scenario]:
    """Parse conf/scenarios entries; every error names the scenario and the field."""
    scenarios, seen = [], set()
    for n, entry in enumerate(entries):
        where = f"scenarios.library[{n}] ({entry.get('id', '?')})"
        missing = [k for k in REQUIRED if not entry.get(k)]
        if missing:
            raise ValueError(f"{where}: missing or empty fields {missing}")
        unknown = set(entry) - {*REQUIRED, "image_dependent"}
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
        if entry["category"] not in categories:
            raise ValueError(
                f"{where}: category '{entry['category']}' is not in the taxonomy {sorted(categories)}"
            )
        if len(entry["unsafe_queries"]) != len(entry["benign_queries"]):
            raise ValueError(
                f"{where}: unsafe_queries and benign_queries must pair up (same count)"
            )
        if entry["id"] in seen:
            raise ValueError(f"{where}: duplicate scenario id")
        seen.add(entry["id"])
        scenarios.append(
            Scenario(
                id=entry["id"],
                category=entry["category"],
                triggers=tuple(entry["triggers"]),
                unsafe_queries=tuple(entry["unsafe_queries"]),
                benign_queries=tuple(entry["benign_queries"]),
                risk=entry["risk"],
                unsafe_guidance=entry["unsafe_guidance"],
                benign_guidance=entry["benign_guidance"],
                image_dependent=bool(entry.get("image_dependent", False)),
            )
        )
    return scenarios
