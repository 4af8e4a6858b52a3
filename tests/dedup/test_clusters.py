"""Union-find clusters: the keeper of a cluster is its lowest id, whatever the pair order."""

from __future__ import annotations

import itertools
import random

from safeforge.dedup.clusters import clusters


def test_singletons_map_to_themselves() -> None:
    ids = ["d", "b", "a", "c"]
    assert clusters(ids, []) == {i: i for i in ids}
    assert clusters([], []) == {}


def test_keeper_is_lowest_id_not_lowest_index() -> None:
    ids = ["m", "c", "x", "a"]
    # pairs by index: m-c, x-a
    assert clusters(ids, [(0, 1), (2, 3)]) == {"m": "c", "c": "c", "x": "a", "a": "a"}
    # pair order does not matter
    assert clusters(ids, [(1, 0), (3, 2)]) == {"m": "c", "c": "c", "x": "a", "a": "a"}


def test_transitive_chain_merges() -> None:
    ids = ["e", "d", "c", "b", "a", "z"]
    # e-d, d-c, c-b, b-a: one cluster of five keyed by "a"; z alone
    got = clusters(ids, [(0, 1), (1, 2), (2, 3), (3, 4)])
    assert got == {"e": "a", "d": "a", "c": "a", "b": "a", "a": "a", "z": "z"}


def test_two_clusters_joined_by_a_bridge() -> None:
    ids = ["k1", "k3", "k2", "k4"]
    # {k1, k3} and {k2, k4} first, then k3-k4 bridges them: keeper k1 for all
    got = clusters(ids, [(0, 1), (2, 3), (1, 3)])
    assert set(got.values()) == {"k1"}


def test_duplicate_and_self_pairs_are_harmless() -> None:
    ids = ["b", "a", "c"]
    assert clusters(ids, [(0, 1), (0, 1), (1, 0), (2, 2)]) == {"b": "a", "a": "a", "c": "c"}


def test_matches_connected_components_on_random_graphs() -> None:
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 25)
        ids = rng.sample([f"id{k:03d}" for k in range(100)], n)
        pairs = [(i, j) for i, j in itertools.combinations(range(n), 2) if rng.random() < 2.0 / n]
        rng.shuffle(pairs)
        # reference: flood fill the graph, keeper = min id of each component
        adj: dict[int, set[int]] = {i: set() for i in range(n)}
        for i, j in pairs:
            adj[i].add(j)
            adj[j].add(i)
        expected: dict[str, str] = {}
        seen: set[int] = set()
        for start in range(n):
            if start in seen:
                continue
            comp, stack = [], [start]
            seen.add(start)
            while stack:
                node = stack.pop()
                comp.append(node)
                for nxt in adj[node] - seen:
                    seen.add(nxt)
                    stack.append(nxt)
            keeper = min(ids[k] for k in comp)
            expected.update((ids[k], keeper) for k in comp)
        assert clusters(ids, pairs) == expected
