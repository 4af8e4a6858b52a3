"""The constitution: objective rules, each a chain of yes/no preconditions, validated against
the taxonomy; and where conf/ files are found by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from safeforge.config import ROOT

ABOUT = ("image", "request")
RULE_KEYS = {"id", "category", "rule", "preconditions"}


@dataclass(frozen=True)
class Precondition:
    question: str
    about: str = "image"  # "image": debiased against no-image and centre-removed; "request"


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    text: str
    preconditions: tuple[Precondition, ...]


@dataclass(frozen=True)
class Constitution:
    source: str  # where it was read from (for messages and judge.json)
    rules: tuple[Rule, ...]
    categories: tuple[str, ...]  # the taxonomy it was validated against

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "categories": list(self.categories),
            "rules": [
                {
                    "id": r.id,
                    "category": r.category,
                    "rule": r.text,
                    "preconditions": [asdict(p) for p in r.preconditions],
                }
                for r in self.rules
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Constitution:
        """The form `to_dict` (and judge.json) holds; validated again."""
        return parse_constitution(
            {"rules": data["rules"]}, str(data["source"]), list(data["categories"])
        )


def parse_constitution(data: Any, source: str, categories: Sequence[str] | None) -> Constitution:
    """Validate a constitution document; every error names `source` and the rule."""

    def fail(where: str, why: str) -> ValueError:
        return ValueError(f"{source}: {where}: {why}")

    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        raise fail("top level", "want a mapping with a list under `rules`")
    if not data["rules"]:
        raise fail("rules", "empty: a constitution needs at least one rule")
    known = set(categories) if categories is not None else None
    rules, seen = [], set()
    for n, raw in enumerate(data["rules"], 1):
        if not isinstance(raw, Mapping):
            raise fail(f"rule #{n}", f"want a mapping with {sorted(RULE_KEYS)}")
        rid = raw.get("id")
        where = f"rule {rid!r}" if rid else f"rule #{n}"
        if not isinstance(rid, str) or not rid.strip():
            raise fail(where, "missing `id`")
        if unknown := set(raw) - RULE_KEYS:
            raise fail(where, f"unknown keys {sorted(unknown)} (known: {sorted(RULE_KEYS)})")
        if rid in seen:
            raise fail(where, "duplicate id")
        seen.add(rid)
        category, text = raw.get("category"), raw.get("rule")
        if not isinstance(category, str) or (known is not None and category not in known):
            raise fail(
                where,
                f"unknown category {category!r} (taxonomy: {sorted(known or [])})",
            )
        if not isinstance(text, str) or not text.strip():
            raise fail(where, "missing `rule` text")
        chain = raw.get("preconditions")
        if not isinstance(chain, list) or not chain:
            raise fail(where, "empty precondition chain: list at least one yes/no question")
        pres = []
        for k, p in enumerate(chain, 1):
            if isinstance(p, str):
                p = {"question": p}
            if not isinstance(p, Mapping) or set(p) - {"question", "about"}:
                raise fail(where, f"precondition {k}: want a question or {{question, about}}")
            q, about = p.get("question"), p.get("about", "image")
            if not isinstance(q, str) or not q.strip():
                raise fail(where, f"precondition {k}: empty question")
            if about not in ABOUT:
                raise fail(where, f"precondition {k}: about={about!r}, want one of {ABOUT}")
            pres.append(Precondition(q.strip(), about))
        rules.append(Rule(rid, category, " ".join(text.split()), tuple(pres)))
    return Constitution(
        source, tuple(rules), tuple(categories or sorted({r.category for r in rules}))
    )


def resolve_conf(value: str, group: str) -> Path:
    """A path (absolute, or relative to the working directory or the repository), or a bare
    name resolved to conf/<group>/<name>.yaml."""
    path = Path(value)
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1:
        path = ROOT / "conf" / group / f"{value}.yaml"
    elif not path.is_absolute() and not path.exists():
        path = ROOT / path
    if not path.is_file():
        raise FileNotFoundError(f"{group} {value!r}: no file {path}")
    return path


def load_taxonomy(value: str) -> list[str]:
    path = resolve_conf(value, "taxonomy")
    cats = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("categories")
    if not isinstance(cats, Mapping) or not cats:
        raise ValueError(f"{path}: no `categories` mapping")
    return list(cats)


def load_constitution(value: str, taxonomy: str) -> Constitution:
    """`value` and `taxonomy`: the judge's `constitution` and `taxonomy` keys (names or paths)."""
    path = resolve_conf(value, "constitution")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return parse_constitution(data, _shown(path), load_taxonomy(taxonomy))


def _shown(path: Path) -> str:
    """Relative to the repository when inside it: judge.json and metrics stay portable."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
