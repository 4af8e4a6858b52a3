"""Clusters from duplicate pairs (connected components) and one keeper per cluster.

The keeper rule: the best row by the `prefer` expressions (each larger-is-better, in order),
then the lowest id. It depends only on the rows' values, never on their order in the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component label (int64) of each index 0..n-1 in the graph whose edges are `pairs`."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
    )
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def keepers(
    table: pl.DataFrame,
    id_column: str,
    pairs: np.ndarray,
    prefer: Sequence[pl.Expr] = (),
) -> pl.Series:
    """Per row of `table` (pairs index its rows), the id of its cluster's keeper."""
    return labelled_keepers(table, id_column, components(table.height, pairs), prefer)


def labelled_keepers(
    table: pl.DataFrame, id_column: str, labels: np.ndarray, prefer: Sequence[pl.Expr] = ()
) -> pl.Series:
    """Per row of `table`, the id of the keeper of its cluster (rows with one label)."""
    labelled = table.select(
        pl.col(id_column), *(p.alias(f"_prefer{k}") for k, p in enumerate(prefer))
    ).with_columns(_cluster=pl.Series(labels))
    ranks = [f"_prefer{k}" for k in range(len(prefer))]
    best = (
        labelled.sort(
            [*ranks, id_column], descending=[True] * len(ranks) + [False], nulls_last=True
        )
        .group_by("_cluster")
        .first()
        .select("_cluster", pl.col(id_column).alias("_keeper"))
    )
    return labelled.join(best, on="_cluster", how="left", maintain_order="left")["_keeper"]


def clusters(ids: Sequence[str], pairs: Sequence[tuple[int, int]]) -> dict[str, str]:
    """Map every id to its cluster's keeper, the lowest id of the cluster."""
    table = pl.DataFrame({"id": list(ids)}, schema={"id": pl.String})
    found = keepers(table, "id", np.array(list(pairs), dtype=np.int64).reshape(-1, 2))
    return dict(zip(table["id"], found, strict=True))
