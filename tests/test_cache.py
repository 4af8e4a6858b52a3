"""The row cache: computes each key once, survives a SIGKILL mid-run, and shares across processes."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from safeforge.cache import RowCache, cache_key, json_codec


def square_map(cache: RowCache, items: list[int], calls: list[list[int]]) -> list[int]:
    encode, decode = json_codec()

    def compute(batch: list[int]) -> list[int]:
        calls.append(batch)
        return [x * x for x in batch]

    return cache.map(
        items, lambda x: cache_key(kind="square", x=x), compute, encode, decode, batch_size=4
    )


def test_second_run_computes_nothing_and_new_items_compute_alone(tmp_path):
    calls: list[list[int]] = []
    assert square_map(RowCache("t", tmp_path), list(range(10)), calls) == [x * x for x in range(10)]
    assert sum(len(c) for c in calls) == 10

    calls.clear()
    cache = RowCache("t", tmp_path)
    assert square_map(cache, list(range(10)), calls) == [x * x for x in range(10)]
    assert calls == [] and cache.stats() == {"cache_hits": 10, "cache_misses": 0}

    calls.clear()
    cache = RowCache("t", tmp_path)
    assert square_map(cache, [*range(10), 42], calls)[-1] == 42 * 42
    assert calls == [[42]] and cache.stats() == {"cache_hits": 10, "cache_misses": 1}


def test_repeated_keys_are_computed_once(tmp_path):
    calls: list[list[int]] = []
    assert square_map(RowCache("t", tmp_path), [3, 3, 3, 4], calls) == [9, 9, 9, 16]
    assert sorted(x for c in calls for x in c) == [3, 4]


def test_key_depends_on_every_part_and_not_on_order():
    assert cache_key(a=1, b="x") == cache_key(b="x", a=1)
    assert cache_key(a=1, b="x") != cache_key(a=1, b="y")
    assert cache_key(prompt="v1", text="t") != cache_key(prompt="v2", text="t")


def test_compute_returning_wrong_count_fails_loudly(tmp_path):
    encode, decode = json_codec()
    with pytest.raises(RuntimeError, match="2 results for 3 inputs"):
        RowCache("t", tmp_path).map([1, 2, 3], str, lambda b: b[:2], encode, decode, batch_size=3)


WORKER = textwrap.dedent(
    """
    import sys, time
    from safeforge.cache import RowCache, cache_key, json_codec
    encode, decode = json_codec()
    def compute(batch):
        time.sleep(0.3)
        return [x * x for x in batch]
    RowCache("t", sys.argv[1]).map(list(range(40)), lambda x: cache_key(kind="sq", x=x),
                                  compute, encode, decode, batch_size=4)
    """
)


def rows_in(db) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def test_sigkill_mid_run_keeps_committed_batches_and_resumes(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)])
    deadline = time.time() + 60
    while rows_in(tmp_path / "rows.sqlite") < 8 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = rows_in(tmp_path / "rows.sqlite")
    assert 8 <= done < 40, f"expected a partial run, {done} rows committed"
    assert done % 4 == 0, "a batch is committed whole or not at all"

    encode, decode = json_codec()
    computed: list[int] = []

    def compute(batch):
        computed.extend(batch)
        return [x * x for x in batch]

    cache = RowCache("t", tmp_path)
    out = cache.map(
        list(range(40)), lambda x: cache_key(kind="sq", x=x), compute, encode, decode, batch_size=4
    )
    assert out == [x * x for x in range(40)]
    assert len(computed) == 40 - done and cache.stats()["cache_hits"] == done


HAMMER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from safeforge.cache import RowCache, cache_key, json_codec
    folder, me, rounds, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    while not go.exists():  # start together: the first open of a new file races too
        time.sleep(0.001)
    cache = RowCache("t", folder)
    encode, decode = json_codec()
    for i in range(rounds):
        # a small transaction of its own keys, then one shared with every other process
        cache.put_many([(f"own-{me}-{i}-{j}", encode([me, i, j])) for j in range(1 + i % 3)])
        cache.map([i], lambda x: cache_key(kind="shared", x=x), lambda b: [x * 7 for x in b],
                  encode, decode, batch_size=1)
    """
)


def test_two_processes_share_one_cache(tmp_path):
    """Queued experiments writing one cache at once: several processes, hundreds of small
    interleaved transactions each, on a file none has created yet: nothing lost, no process
    fails on a locked database."""
    procs_n, rounds = 4, 300
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(tmp_path / "cache"), str(me), str(rounds), str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(procs_n)
    ]
    time.sleep(0.5)
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * procs_n, errors
    assert not any("locked" in e for e in errors), errors

    own = procs_n * sum(1 + i % 3 for i in range(rounds))
    assert rows_in(tmp_path / "cache" / "rows.sqlite") == own + rounds
    with sqlite3.connect(tmp_path / "cache" / "rows.sqlite") as db:
        spans = [
            db.execute(
                "SELECT MIN(created), MAX(created) FROM rows WHERE key LIKE ?", (f"own-{me}-%",)
            ).fetchone()
            for me in range(procs_n)
        ]
    # they did write at the same time: every process's writes overlap every other's
    assert max(first for first, _ in spans) < min(last for _, last in spans), spans
    _, decode = json_codec()
    cache = RowCache("t", tmp_path / "cache")
    shared = cache.get_many([cache_key(kind="shared", x=i) for i in range(rounds)])
    assert sorted(decode(v) for v in shared.values()) == [i * 7 for i in range(rounds)]
    mine = cache.get_many([f"own-3-{rounds - 1}-{j}" for j in range(3)])
    assert sorted(decode(v) for v in mine.values()) == [[3, rounds - 1, j] for j in range(3)]
