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


def test_two_processes_share_one_cache(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert rows_in(tmp_path / "rows.sqlite") == 40
