"""Union-find over duplicate pairs; one keeper per cluster by a deterministic rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def clusters(ids: Sequence[str], pairs: Iterable[tuple[int, int]]) -> dict[str, str]:
    """Map every id to its cluster's keeper: the lowest id of the cluster."""
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            # the root is the lowest id, so the keeper rule is the union rule
            if ids[ra] < ids[rb]:
                parent[rb] = ra
            else:
                parent[ra] = rb
    return {ids[i]: ids[find(i)] for i in range(len(ids))}
