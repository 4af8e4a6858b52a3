"""The scenario library: its checks against the taxonomy, and the real library in conf/."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from safeforge.generate.scenarios import REQUIRED, Scenario, load_library

CONF = Path(__file__).resolve().parents[2] / "conf"
CATEGORIES = {"physical_injury": {}, "privacy": {}}


def entry(sid: str = "hot_drink", **over: Any) -> dict[str, Any]:
    base = {
        "id": sid,
        "category": "physical_injury",
        "triggers": ["a cup of coffee", "a mug"],
        "unsafe_queries": ["Can my toddler drink this?", "Can he carry it alone?"],
        "benign_queries": ["How hot should it be?", "How much caffeine is too much?"],
        "risk": "The image shows {subject}.",
        "unsafe_guidance": "Please don't: it can scald.",
        "benign_guidance": "Serve it below 60 C.",
    }
    base.update(over)
    return base


def test_valid_entries_parse() -> None:
    lib = load_library(
        [entry("a"), entry("b", category="privacy", image_dependent=True)], CATEGORIES
    )
    assert [s.id for s in lib] == ["a", "b"]
    a, b = lib
    assert isinstance(a, Scenario)
    assert a.image_dependent is False  # default
    assert b.image_dependent is True
    assert a.triggers == ("a cup of coffee", "a mug")  # lists become tuples (hashable)
    assert a.unsafe_queries == ("Can my toddler drink this?", "Can he carry it alone?")
    assert hash(a) != hash(b)
    # the cache key holds every field that decides what the scenario generates
    assert set(a.as_key()) == {*REQUIRED, "image_dependent"}
    assert a.as_key()["risk"] == "The image shows {subject}."


def test_empty_library() -> None:
    assert load_library([], CATEGORIES) == []


def test_input_entries_are_not_modified() -> None:
    entries = [entry("a")]
    before = copy.deepcopy(entries)
    load_library(entries, CATEGORIES)
    assert entries == before


@pytest.mark.parametrize("field", REQUIRED[1:])  # id has its own test
def test_missing_field_names_scenario_and_field(field: str) -> None:
    bad = entry("broken_one")
    del bad[field]
    with pytest.raises(ValueError, match=r"library\[1\] \(broken_one\).*missing") as info:
        load_library([entry("fine"), bad], CATEGORIES)
    assert repr(field) in str(info.value)


@pytest.mark.parametrize(
    ("field", "empty"), [("triggers", []), ("unsafe_guidance", ""), ("risk", None)]
)
def test_empty_field_counts_as_missing(field: str, empty: Any) -> None:
    with pytest.raises(ValueError, match=r"\(empty_one\).*missing or empty") as info:
        load_library([entry("empty_one", **{field: empty})], CATEGORIES)
    assert repr(field) in str(info.value)


def test_missing_id_names_the_position() -> None:
    bad = entry()
    del bad["id"]
    with pytest.raises(ValueError, match=r"library\[2\] \(\?\).*'id'"):
        load_library([entry("a"), entry("b"), bad], CATEGORIES)


def test_unknown_field() -> None:
    with pytest.raises(ValueError, match=r"\(typo\): unknown fields \['trigers'\]"):
        load_library([entry("typo", trigers=["x"])], CATEGORIES)


def test_category_not_in_taxonomy() -> None:
    with pytest.raises(ValueError, match=r"\(cooking\): category 'kitchen_safety' is not"):
        load_library([entry("cooking", category="kitchen_safety")], CATEGORIES)


def test_unequal_unsafe_and_benign_counts() -> None:
    bad = entry("lopsided", benign_queries=["only one"])
    with pytest.raises(ValueError, match=r"\(lopsided\): unsafe_queries and benign_queries"):
        load_library([bad], CATEGORIES)


def test_duplicate_id() -> None:
    with pytest.raises(ValueError, match=r"library\[2\] \(twice\): duplicate scenario id"):
        load_library([entry("twice"), entry("other"), entry("twice")], CATEGORIES)


# ---------------------------------------------------------------- the real library


@pytest.fixture(scope="module")
def real_library() -> list[Scenario]:
    scenarios = yaml.safe_load((CONF / "scenarios" / "default.yaml").read_text())["library"]
    taxonomy = yaml.safe_load((CONF / "taxonomy" / "default.yaml").read_text())["categories"]
    return load_library(scenarios, taxonomy)


def test_real_library_loads_and_covers_the_taxonomy(real_library: list[Scenario]) -> None:
    assert len(real_library) >= 12
    assert len({s.category for s in real_library}) >= 8
    assert any(s.image_dependent for s in real_library)
    assert any(not s.image_dependent for s in real_library)


def test_real_library_templates_are_usable(real_library: list[Scenario]) -> None:
    for s in real_library:
        # `{subject}` is the only placeholder: formatting with it must not raise
        s.risk.format(subject="a mug of coffee")
        assert len(s.unsafe_queries) == len(s.benign_queries) >= 1
        assert len(set(s.unsafe_queries)) == len(s.unsafe_queries), s.id
        # no query is both unsafe and benign in one scenario
        assert not set(s.unsafe_queries) & set(s.benign_queries), s.id
        assert all(t.strip() for t in s.triggers), s.id
