"""Crash safety: a damaged row-cache file is an error naming it (never wrong results), and a stage
SIGKILLed mid-run on the folder-source DAG reruns to the same bytes with a sound cache.

The long version, many trials over describe/generate/embed/score: benchmarks/kill_trials.py.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import sqlite3
from pathlib import Path

import pytest
from helpers import ROOT

from safeforge.cache import CacheCorruptError, RowCache, cache_key, json_codec
from safeforge.stage import run


def load_kill_trials():
    spec = importlib.util.spec_from_file_location(
        "kill_trials", ROOT / "benchmarks" / "kill_trials.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def squares(cache: RowCache, n: int, value_bytes: int = 0) -> list:
    encode, decode = json_codec()
    pad = "x" * value_bytes
    return cache.map(
        list(range(n)),
        lambda x: cache_key(kind="sq", x=x, pad=len(pad)),
        lambda batch: [{"sq": x * x, "pad": pad} for x in batch],
        encode,
        decode,
        batch_size=50,
    )


def real_cache(folder: Path, n: int = 2000, value_bytes: int = 300) -> Path:
    """A closed cache file of `n` entries (its WAL checkpointed into it)."""
    cache = RowCache("t", folder)
    squares(cache, n, value_bytes)
    cache.close()
    db = folder / "rows.sqlite"
    assert not (folder / "rows.sqlite-wal").exists()
    return db


def pages(db: Path) -> tuple[bytearray, int]:
    data = bytearray(db.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    return data, 65536 if size == 1 else size


def assert_names_the_file(err: pytest.ExceptionInfo, db: Path) -> None:
    message = str(err.value)
    assert str(db) in message and "move it aside or delete it" in message, message


def test_an_empty_file_is_an_empty_cache(tmp_path):
    (tmp_path / "rows.sqlite").write_bytes(b"")  # e.g. killed between create and first write
    cache = RowCache("t", tmp_path)
    assert [r["sq"] for r in squares(cache, 10)] == [x * x for x in range(10)]
    assert cache.stats() == {"cache_hits": 0, "cache_misses": 10}


def test_random_garbage_is_refused_by_name(tmp_path):
    db = tmp_path / "rows.sqlite"
    db.write_bytes(random.Random(0).randbytes(20000))
    with pytest.raises(CacheCorruptError, match="not a database") as err:
        RowCache("t", tmp_path)
    assert_names_the_file(err, db)
    assert db.read_bytes() == random.Random(0).randbytes(20000), "the file is left as it was"


def test_a_truncated_file_is_refused_by_name(tmp_path):
    db = real_cache(tmp_path)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheCorruptError, match="malformed") as err:
        RowCache("t", tmp_path)
    assert_names_the_file(err, db)


def test_a_flipped_byte_in_a_page_header_is_refused_by_name(tmp_path):
    db = real_cache(tmp_path)
    data, page_size = pages(db)
    leaves = [p for p in range(page_size, len(data), page_size) if data[p] == 0x0A]
    assert leaves, "expected index b-tree leaf pages (the WITHOUT ROWID table)"
    data[leaves[len(leaves) // 2]] ^= 0x01  # 0x0a -> 0x0b: no such page type
    db.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError, match="malformed") as err:
        RowCache("t", tmp_path)
    assert_names_the_file(err, db)


def test_a_damaged_overflow_page_fails_the_read_not_with_a_wrong_value(tmp_path):
    # values bigger than a page continue on overflow pages, which the check on open does not
    # read: the damage shows on the read, as the same clear error
    db = real_cache(tmp_path, n=20, value_bytes=20000)
    data, page_size = pages(db)
    overflow = [
        p
        for p in range(page_size, len(data), page_size)
        if data[p + 4 : p + 204] == b"x" * 200 and int.from_bytes(data[p : p + 4], "big")
    ]
    assert overflow, "expected overflow pages continuing a chain"
    for p in overflow:
        data[p : p + 4] = (0xFFFFFF00).to_bytes(4, "big")  # next page: far past the file's end
    db.write_bytes(bytes(data))
    cache = RowCache("t", tmp_path)  # the key b-tree is sound: it opens
    with pytest.raises(CacheCorruptError, match="malformed") as err:
        squares(cache, 20, 20000)
    assert_names_the_file(err, db)


def test_a_stage_reports_a_damaged_cache_in_one_line(tmp_path, caplog):
    db = tmp_path / "rows.sqlite"
    db.write_bytes(b"not sqlite at all" * 100)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        run(lambda: RowCache("t", tmp_path))
    assert exit_info.value.code == 1
    assert any(str(db) in r.getMessage() for r in caplog.records), caplog.text


def test_the_comparison_sees_a_changed_a_missing_and_an_extra_file(tmp_path):
    kt = load_kill_trials()
    (tmp_path / "data" / "a").mkdir(parents=True)
    for name in ("x.parquet", "y.parquet"):
        (tmp_path / "data" / "a" / name).write_bytes(b"same bytes")
    expected = kt.data_hashes(tmp_path)
    assert kt.differences(expected, kt.data_hashes(tmp_path)) == []
    (tmp_path / "data" / "a" / "x.parquet").write_bytes(b"same bytez")
    (tmp_path / "data" / "a" / "y.parquet").unlink()
    (tmp_path / "data" / "a" / ".y.parquet.1234.tmp").write_bytes(b"half")
    assert kt.differences(expected, kt.data_hashes(tmp_path)) == [
        "missing data/a/y.parquet",
        "extra data/a/.y.parquet.1234.tmp",
        "changed data/a/x.parquet",
    ]


def test_integrity_check_sees_a_damaged_cache(tmp_path):
    kt = load_kill_trials()
    db = real_cache(tmp_path)
    assert kt.integrity(db) == "ok"
    data, page_size = pages(db)
    leaf = next(p for p in range(page_size, len(data), page_size) if data[p] == 0x0A)
    data[leaf] ^= 0x01
    db.write_bytes(bytes(data))
    assert kt.integrity(db) != "ok"


@pytest.mark.slow
def test_a_stage_killed_mid_run_reruns_to_the_same_bytes(tmp_path):
    """One kill trial of benchmarks/kill_trials.py on a small folder source: generate is
    SIGKILLed at a random point of its run, `dvc repro` reruns it, data/ is byte for byte the
    uninterrupted run's, and the row cache passes PRAGMA integrity_check."""
    kt = load_kill_trials()
    lines: list[str] = []
    (result,) = kt.run_trials(
        1, seed=3, stages=["generate"], keep=tmp_path / "trials", images=6,
        say=lines.append, targets=["generate"],
    )  # fmt: skip
    report = "\n".join(lines) + "\n" + kt.row(result)
    assert result["landed"], f"the kill should land while generate runs\n{report}"
    assert result["killed_exit"] != 0, report
    assert result["rerun_exit"] == 0, report
    assert result["identical"] and not result["differences"], report
    assert result["integrity_ok"], report
    assert os.path.exists(tmp_path / "trials" / "cache-1" / "rows.sqlite"), report
    with sqlite3.connect(tmp_path / "trials" / "cache-1" / "rows.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
