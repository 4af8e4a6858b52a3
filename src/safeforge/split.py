"""Train/val/test split grouped by image cluster: no image (nor its near duplicates) is in two
splits. Groups are ordered by a seeded hash and filled split by split to the row fractions."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import polars as pl

SPLITS = ("train", "val", "test")


def assign_groups(
    group_sizes: Mapping[str, int], fractions: Mapping[str, float], seed: int
) -> dict[str, str]:
    """group -> split. test and val are filled first (at least one group each when their
    fraction is above 0 and groups remain); train takes the rest and is never empty."""
    if set(fractions) != set(SPLITS) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(
            f"split.fractions must have keys {SPLITS} and sum to 1, got {dict(fractions)}"
        )
    order = sorted(group_sizes, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    total = sum(group_sizes.values())
    assignment: dict[str, str] = {}
    for split in ("test", "val"):
        target, filled = fractions[split] * total, 0
        # keep a group back for val (when it wants one) and one for train
        reserve = 2 if split == "test" and fractions["val"] > 0 else 1
        while len(order) > reserve and filled < target:
            group = order.pop(0)
            assignment[group] = split
            filled += group_sizes[group]
    assignment.update((g, "train") for g in order)
    return assignment


def split_table(
    table: pl.DataFrame, fractions: Mapping[str, float], seed: int, group: str = "image_cluster"
) -> pl.DataFrame:
    sizes = dict(table.group_by(group).len().iter_rows())
    assignment = assign_groups(sizes, fractions, seed)
    return table.with_columns(
        split=pl.col(group).replace_strict(assignment, return_dtype=pl.String)
    )
