"""The row cache: content-addressed results of every model call, outside DVC.

DVC reruns a whole stage when an input changes; this cache makes the rerun cheap. The key is the
sha256 of everything that decides the result (input content, prompt/template text, model id and
revision, sampling params, backend), so adding rows computes only the new rows, editing a prompt
recomputes only that prompt's rows, and a killed stage resumes where it stopped.

Storage is one SQLite file in WAL mode: concurrent readers and writers from several workspaces
and queued experiments are safe, and each batch is one transaction, so a kill loses at most the
batch in flight. Location: $SAFEFORGE_CACHE_DIR, else the user's cache folder. The location is
deliberately not a DVC param: where the cache lives never changes a result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")
# rows per transaction for callers that compute no model batch (image features, OCR, template
# records): internal, not a knob
MAP_BATCH = 32
R = TypeVar("R")


def default_cache_dir() -> Path:
    env = os.environ.get("SAFEFORGE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "safeforge"


def store_path(cache_dir: str | Path | None = None) -> Path:
    """The store's file in `cache_dir` (default: default_cache_dir()), its folder created."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "rows.sqlite"


class CacheCorruptError(ValueError):
    """The cache file is not a sound SQLite database. A ValueError, so a stage reports it in one
    line (stage.run) instead of a traceback."""


# SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB
_DAMAGED = {11, 26}


def _damaged(err: sqlite3.DatabaseError) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGED
    text = str(err)
    return "malformed" in text or "not a database" in text


def corrupt_error(path: Path, err: sqlite3.DatabaseError) -> CacheCorruptError:
    return CacheCorruptError(
        f"row cache {path} is damaged ({err}): move it aside or delete it (with its -wal and"
        f" -shm files) and rerun; its entries are computed again by the model calls"
        f" (`sqlite3 {path} .recover` may save most of them first)"
    )


# A damaged file (truncated, overwritten, a bad page) is an error naming it, not set aside and
# rebuilt automatically: the file is shared by every workspace and queued experiment, and
# renaming it under a process that has it open splits their writes between two files; and its
# entries may be GPU-hours of model calls that `.recover` can save. Either way no result is
# ever read from a page SQLite finds damaged: every read and write below turns SQLite's
# "malformed" / "not a database" into CacheCorruptError. An empty (zero-byte) file is a valid,
# empty database to SQLite: it is used as a new cache. SQLite keeps no checksum of page
# contents, so a flipped byte inside a stored value (not in the b-tree's structure) is not
# detected here, nor by PRAGMA integrity_check.
def _check(db: sqlite3.Connection) -> None:
    """On open, walk the key b-tree (every leaf page; values' overflow pages are not read): a
    truncated file or a damaged page fails here rather than mid-run. Measured on a 50k-entry,
    186 MB cache: 14-22 ms, against 150-220 ms for PRAGMA quick_check, which reads every page."""
    db.execute("SELECT COUNT(*) FROM rows").fetchone()


def open_store(path: Path, attempts: int = 50) -> sqlite3.Connection:
    """Open (and on first use create) the store. Switching a new file to WAL needs a moment of
    exclusive access, which SQLite's busy timeout does not cover: retry while another process
    is doing the same. A damaged file raises CacheCorruptError naming it."""
    for attempt in range(attempts):
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, value BLOB, created REAL)"
                " WITHOUT ROWID"
            )
            _check(db)
            return db
        except sqlite3.DatabaseError as err:
            db.close()
            if _damaged(err):
                raise corrupt_error(path, err) from err
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def cache_key(**parts: Any) -> str:
    """sha256 over a canonical JSON of the parts (order-independent, types kept)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Executor(Protocol):
    """Where the misses of `RowCache.map` are computed, never what: the driver keys the items,
    reads the hits and commits each batch that comes back (safeforge.executors: local or ray)."""

    name: str

    def batches(
        self,
        items: Sequence[Any],
        compute: Callable[[list[Any]], list[Any]],
        batch_size: int,
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
    ) -> Iterator[tuple[list[int], list[Any], list[bytes]]]:
        """(positions in `items`, their outputs, the outputs encoded) as batches finish, in any
        order, until every item has its output once: each output encoded once, where it was
        computed."""
        ...

    def stats(self) -> dict[str, int]: ...


class LocalExecutor:
    """In this process, a batch at a time: the default."""

    name = "local"

    def batches(
        self,
        items: Sequence[T],
        compute: Callable[[list[T]], list[R]],
        batch_size: int,
        encode: Callable[[R], bytes],
        decode: Callable[[bytes], R],
    ) -> Iterator[tuple[list[int], list[R], list[bytes]]]:
        for start in range(0, len(items), batch_size):
            batch = list(items[start : start + batch_size])
            outputs = compute(batch)
            if len(outputs) != len(batch):
                raise RuntimeError(
                    f"compute returned {len(outputs)} results for {len(batch)} inputs"
                )
            yield list(range(start, start + len(batch))), outputs, [encode(o) for o in outputs]

    def stats(self) -> dict[str, int]:
        return {}


# The executor every RowCache of this process computes its misses on: a stage picks it once
# (safeforge.executors.use_configured_executor), so the caches opened deep inside scoring or a
# judge follow without an argument through every layer.
_executor: Executor = LocalExecutor()


def use_executor(executor: Executor) -> None:
    global _executor
    _executor = executor


class RowCache:
    """One store for every kind of call: keys are global (the kind is part of each key);
    `namespace` only labels progress bars and logs. Misses are computed on `executor`, by
    default the process's current one (local unless a stage chose Ray)."""

    def __init__(
        self,
        namespace: str,
        cache_dir: str | Path | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.namespace = namespace
        self.path = store_path(cache_dir)
        self.dir = self.path.parent
        self._db = open_store(self.path)
        self._executor = executor
        self.hits = 0
        self.misses = 0
        self.sent = 0  # rows handed to the executor

    @property
    def executor(self) -> Executor:
        return self._executor or _executor

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        try:
            for start in range(0, len(keys), 500):  # SQLite's bound-variable limit
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, value FROM rows WHERE key IN ({marks})"
                found.update(self._db.execute(sql, chunk).fetchall())
        except sqlite3.DatabaseError as err:
            raise (corrupt_error(self.path, err) if _damaged(err) else err) from err
        return found

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        now = time.time()
        rows = [(k, v, now) for k, v in items]
        try:
            with self._db:  # one transaction: the whole batch or nothing
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)", rows)
        except sqlite3.DatabaseError as err:
            raise (corrupt_error(self.path, err) if _damaged(err) else err) from err

    def stats(self) -> dict[str, int]:
        """Hits and misses; on another executor than local, also the rows this cache sent it
        (`ray_rows`) and the executor's own counts (`ray_started`)."""
        stats = {"cache_hits": self.hits, "cache_misses": self.misses}
        if self.executor.name != LocalExecutor.name:
            stats[f"{self.executor.name}_rows"] = self.sent
            stats.update(self.executor.stats())
        return stats

    def close(self) -> None:
        self._db.close()

    def map(
        self,
        items: Sequence[T],
        key_fn: Callable[[T], str],
        compute: Callable[[list[T]], list[R]],
        encode: Callable[[R], bytes],
        decode: Callable[[bytes], R],
        batch_size: int = MAP_BATCH,
        desc: str | None = None,
        keep: Callable[[R], bool] | None = None,
    ) -> list[R]:
        """Results for `items` in order: cached ones read back, the rest computed in batches.

        Each computed batch is committed as it comes back from the executor, so a killed run
        keeps its work.
        Items with the same key are computed once. Results for which `keep` is false (a failed
        model call) are returned but not stored, so the next run tries them again.
        """
        keys = [key_fn(item) for item in items]
        cached = self.get_many(sorted(set(keys)))
        todo: dict[str, T] = {}
        for key, item in zip(keys, items, strict=False):
            if key not in cached and key not in todo:
                todo[key] = item
        self.hits += len(keys) - sum(1 for k in keys if k in todo)
        self.misses += sum(1 for k in keys if k in todo)
        log.info(
            "%s: %d cached, %d to compute (%s executor)",
            desc or self.namespace,
            len(set(keys)) - len(todo),
            len(todo),
            self.executor.name,
        )

        results: dict[str, R] = {k: decode(v) for k, v in cached.items()}
        pending = list(todo.items())
        done: set[int] = set()
        self.sent += len(pending)
        with tqdm(total=len(pending), desc=desc or self.namespace, disable=not pending) as bar:
            batches = self.executor.batches(
                [item for _, item in pending], compute, batch_size, encode, decode
            )
            for positions, outputs, blobs in batches:
                if not len(outputs) == len(blobs) == len(positions) or done.intersection(positions):
                    raise RuntimeError(
                        f"{self.namespace}: the {self.executor.name} executor returned"
                        f" {len(outputs)} results for {len(positions)} rows, or a row twice"
                    )
                batch_keys = [pending[i][0] for i in positions]
                self.put_many(
                    (k, blob)
                    for k, o, blob in zip(batch_keys, outputs, blobs, strict=True)
                    if keep is None or keep(o)
                )
                results.update(zip(batch_keys, outputs, strict=True))
                done.update(positions)
                bar.update(len(outputs))
        if len(done) != len(pending):
            raise RuntimeError(
                f"{self.namespace}: the {self.executor.name} executor returned {len(done)} of"
                f" {len(pending)} results"
            )
        return [results[k] for k in keys]


def json_codec() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    return (lambda obj: json.dumps(obj, separators=(",", ":")).encode()), json.loads
