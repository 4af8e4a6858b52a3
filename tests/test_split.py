"""Grouped train/val/test split: no image cluster in two splits, fractions by rows, seeded."""

from __future__ import annotations

import random

import polars as pl
import pytest

from safeforge.split import SPLITS, assign_groups, split_table

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def table(group_sizes: dict[str, int]) -> pl.DataFrame:
    rows = [
        {"record_id": f"{g}-{k}", "image_cluster": g}
        for g, n in group_sizes.items()
        for k in range(n)
    ]
    return pl.DataFrame(rows)


def random_sizes(n_groups: int, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    return {f"cluster{i:04d}": rng.randint(1, 10) for i in range(n_groups)}


def test_no_group_in_two_splits_and_every_row_assigned() -> None:
    sizes = random_sizes(200)
    out = split_table(table(sizes), FRACTIONS, seed=0)
    assert out.height == sum(sizes.values())
    assert out["split"].null_count() == 0
    assert set(out["split"]) == set(SPLITS)
    per_group = out.group_by("image_cluster").agg(pl.col("split").n_unique().alias("n"))
    assert per_group["n"].max() == 1
    assert per_group.height == 200


def test_fractions_respected_by_rows() -> None:
    sizes = random_sizes(200)  # ~1100 rows, groups of 1..10
    out = split_table(table(sizes), FRACTIONS, seed=0)
    total = out.height
    counts = dict(out.group_by("split").len().iter_rows())
    for split, frac in FRACTIONS.items():
        # greedy filling overshoots by less than one group (<= 10 rows, < 1% here)
        assert abs(counts[split] / total - frac) <= 0.1 * frac, (split, counts)
    # test and val stop as soon as they reach their target
    for split in ("test", "val"):
        assert FRACTIONS[split] * total <= counts[split] < FRACTIONS[split] * total + 10


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("n_groups", [3, 4, 5, 8])
def test_every_split_non_empty_with_three_or_more_equal_groups(seed: int, n_groups: int) -> None:
    sizes = {f"g{i}": 5 for i in range(n_groups)}
    assignment = assign_groups(sizes, FRACTIONS, seed)
    assert set(assignment) == set(sizes)
    assert set(assignment.values()) == set(SPLITS)


def test_every_split_non_empty_with_three_uneven_groups() -> None:
    sizes = {"a": 1, "b": 1, "c": 10}
    for seed in range(20):
        assert set(assign_groups(sizes, FRACTIONS, seed).values()) == set(SPLITS), seed


def test_train_never_empty() -> None:
    assert assign_groups({"only": 7}, FRACTIONS, 0) == {"only": "train"}
    for seed in range(20):
        got = assign_groups({"a": 1, "b": 100}, FRACTIONS, seed)
        assert "train" in got.values()
    # even when train's fraction is 0
    got = assign_groups({"a": 1, "b": 1, "c": 1}, {"train": 0.0, "val": 0.5, "test": 0.5}, 0)
    assert "train" in got.values()


def test_zero_fraction_split_gets_no_group() -> None:
    sizes = random_sizes(50)
    got = assign_groups(sizes, {"train": 0.8, "val": 0.0, "test": 0.2}, 3)
    assert "val" not in got.values()
    assert {"train", "test"} == set(got.values())


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    sizes = random_sizes(200)
    a = assign_groups(sizes, FRACTIONS, seed=0)
    assert assign_groups(sizes, FRACTIONS, seed=0) == a
    # insertion order of the groups does not matter
    shuffled = dict(reversed(list(sizes.items())))
    assert assign_groups(shuffled, FRACTIONS, seed=0) == a
    b = assign_groups(sizes, FRACTIONS, seed=1)
    changed = sum(a[g] != b[g] for g in sizes)
    assert changed > 40  # a new seed reshuffles: most of the 80 non-train groups move


def test_split_table_uses_the_group_column() -> None:
    t = table({"x": 2, "y": 2, "z": 2, "w": 2}).with_columns(
        other=pl.col("record_id").str.slice(0, 1)
    )
    out = split_table(t, FRACTIONS, seed=5, group="other")
    assert out.group_by("other").agg(pl.col("split").n_unique())["split"].max() == 1
    assert out.select("record_id", "image_cluster", "other").equals(t)


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.8, "test": 0.2},  # missing val
        {"train": 0.6, "val": 0.2, "test": 0.2, "holdout": 0.0},  # unknown key
        {"train": 0.6, "val": 0.3, "test": 0.3},  # sums to 1.2
        {"train": 0.5, "val": 0.2, "test": 0.2},  # sums to 0.9
    ],
)
def test_bad_fractions(fractions: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"split\.fractions must have keys"):
        assign_groups({"a": 1, "b": 1, "c": 1}, fractions, 0)
    with pytest.raises(ValueError, match=r"split\.fractions must have keys"):
        split_table(table({"a": 1, "b": 1, "c": 1}), fractions, 0)
