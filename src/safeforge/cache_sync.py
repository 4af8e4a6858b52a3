"""Share the row cache through the project's DVC remote: `safeforge cache push|pull|status`.

The remote (its URL, credentials and endpointurl, config.local included) is DVC's own: this
module asks DVC for the remote's filesystem and writes beside DVC's objects, under
`<remote path>/safeforge/rowcache/segments/`. `dvc gc -c` never deletes there: it only deletes
what its object databases list, `<path>/files/md5/<2>/<rest>` and the legacy `<path>/<2>/<rest>`,
and a path of any other depth "doesn't look like a cache file" to it (dvc_objects.db.path_to_oid).

Format: append-only, content-addressed segments. A push writes every entry the remote does not
have yet into ONE parquet file (columns key, value, created; never pickle) named by the sha256 of
its bytes, and uploads it unless a segment of that name exists (same name, same bytes). A pull
lists the segments, downloads those this cache has not merged yet, checks each one's sha256
against its name (a corrupt or renamed segment is refused, naming it, and merges nothing), and
inserts its entries with INSERT OR IGNORE: a local entry is never overwritten, pulling twice
changes nothing.

Bookkeeping lives in the cache file itself, in tables of its own (an older cache file gets them
on first use): which remotes this cache knows (`sync_remotes`), which segments of each it pushed
or merged (`sync_segments`), and which keys each remote holds (`sync_keys`), so a push sends only
entries neither pushed nor pulled before. A remote is known by its URL and endpoint, not its name,
since the cache is shared by workspaces that may name one remote differently. Every change to the
cache is a short transaction (a batch of entries with its bookkeeping), so stages writing the cache
meanwhile are never blocked for long, and a killed push or pull is redone by the next one.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeforge.cache import open_store, store_path

SEGMENTS = ("safeforge", "rowcache", "segments")  # under the remote's path
SEGMENT_NAME = re.compile(r"^([0-9a-f]{64})\.parquet$")
# rows per parquet row group and per merge transaction: a format detail, not a knob
BATCH_ROWS = 5000
COLUMNS = ("key", "value", "created")

SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS sync_remotes (id INTEGER PRIMARY KEY, url TEXT UNIQUE NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sync_segments (remote INTEGER NOT NULL, name TEXT NOT NULL,"
    " entries INTEGER NOT NULL, origin TEXT NOT NULL, at REAL NOT NULL,"
    " PRIMARY KEY (remote, name)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS sync_keys (remote INTEGER NOT NULL, key TEXT NOT NULL,"
    " PRIMARY KEY (remote, key)) WITHOUT ROWID",
)


class SyncError(Exception):
    """A failure the user can fix; its message is one line."""


@dataclass
class Remote:
    name: str
    url: str  # s3://bucket/path
    path: str  # bucket/path, as the filesystem sees it
    fs: Any  # a dvc_objects FileSystem
    endpoint: str | None = None

    @property
    def ident(self) -> str:
        """What this cache calls the remote: its URL, and the server when one is named."""
        return f"{self.url}@{self.endpoint}" if self.endpoint else self.url

    @property
    def segments(self) -> str:
        return self.fs.join(self.path, *SEGMENTS)

    def where(self) -> str:
        return f"remote '{self.name}' ({self.url})"


@dataclass
class Result:
    segments: list[str] = field(default_factory=list)  # uploaded or merged
    entries: int = 0  # entries sent, or new entries merged
    skipped: int = 0  # pull: entries already here (kept as they are)
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


# ---- the remote ---------------------------------------------------------------------------
def open_remote(name: str | None = None, repo_dir: str | Path | None = None) -> Remote:
    """The DVC remote `name` (default: the repo's default remote), through DVC's config."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        repo = Repo(str(repo_dir) if repo_dir else None)
    except DvcException as err:
        raise SyncError(_one_line(err)) from err
    try:
        remote = repo.cloud.get_remote(name, "safeforge cache")
    except DvcException as err:
        raise SyncError(_one_line(err)) from err
    finally:
        repo.close()
    return Remote(
        name=remote.name,
        url=remote.fs.unstrip_protocol(remote.path),
        path=remote.path,
        fs=remote.fs,
        endpoint=remote.config.get("endpointurl"),
    )


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def explain(remote: Remote, err: BaseException) -> SyncError | None:
    """One line for the failures a user fixes in their set-up; None for anything else."""
    s3 = remote.url.startswith("s3://")
    chain = list(_chain(err))
    if any(type(e).__name__ in {"NoCredentialsError", "PartialCredentialsError"} for e in chain):
        return SyncError(
            f"{remote.where()}: no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or"
            f" dvc remote modify --local {remote.name} access_key_id/secret_access_key"
        )
    for exc in chain:
        kind = type(exc).__name__
        if isinstance(exc, PermissionError):
            fix = (
                "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                if s3
                else f"check the remote's credentials (dvc remote modify --local {remote.name} ...)"
            )
            return SyncError(f"{remote.where()}: access denied: {fix}")
        if s3 and (
            kind == "NoSuchBucket"
            or (isinstance(exc, FileNotFoundError) and "bucket" in str(exc).lower())
        ):
            bucket = remote.path.split("/", 1)[0]
            return SyncError(
                f"{remote.where()}: bucket '{bucket}' does not exist: create it, or fix the URL"
                f" (dvc remote modify {remote.name} url s3://BUCKET/PATH)"
            )
        if kind in {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"} or (
            isinstance(exc, ConnectionError)
        ):
            where = remote.endpoint or "the endpoint"
            return SyncError(
                f"{remote.where()}: cannot reach {where}: check that the server is up and the"
                f" endpointurl (dvc remote modify --local {remote.name} endpointurl URL)"
            )
    return None


def _remote_call(remote: Remote, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        known = explain(remote, err)
        if known is None:
            raise
        raise known from err


def list_segments(remote: Remote) -> list[str]:
    """File names under the segments prefix (every name, valid or not), sorted. Also the first
    call of every command, so wrong keys, a missing bucket or an unreachable server fail here."""

    def find() -> list[str]:
        try:
            return list(remote.fs.find(remote.segments))
        except FileNotFoundError:
            if remote.url.startswith("s3://"):
                raise  # S3 lists a missing prefix as empty: this is the bucket
            return []  # a local or ssh folder not made yet

    return sorted(remote.fs.name(p) for p in _remote_call(remote, find))


# ---- the local side -------------------------------------------------------------------------
def connect(cache_dir: str | Path | None = None) -> tuple[Path, sqlite3.Connection]:
    """The cache file (created if new) with the bookkeeping tables."""
    path = store_path(cache_dir)
    db = open_store(path)
    for sql in SCHEMA_SQL:
        db.execute(sql)
    return path, db


def _known_segments(db: sqlite3.Connection, rid: int) -> set[str]:
    """The segments of remote `rid` this cache pushed or merged."""
    return {n for (n,) in db.execute("SELECT name FROM sync_segments WHERE remote = ?", (rid,))}


def _remote_id(db: sqlite3.Connection, remote: Remote) -> int:
    db.execute("INSERT OR IGNORE INTO sync_remotes (url) VALUES (?)", (remote.ident,))
    return db.execute("SELECT id FROM sync_remotes WHERE url = ?", (remote.ident,)).fetchone()[0]


def _arrow_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("value", pa.binary()), ("created", pa.float64())])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- push, pull, status ---------------------------------------------------------------------
def push(remote: Remote, cache_dir: str | Path | None = None) -> Result:
    """Upload, as one new segment, every entry the remote does not have yet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    result = Result()
    on_remote = set(list_segments(remote))
    path, db = connect(cache_dir)
    try:
        rid = _remote_id(db, remote)
        with tempfile.TemporaryDirectory(prefix="push-", dir=path.parent) as tmp:
            local = Path(tmp) / "segment.parquet"
            schema = _arrow_schema()
            # one read snapshot (WAL: writers go on meanwhile); key order makes the bytes, and
            # so the name, the same for the same entries
            db.execute("BEGIN")
            try:
                rows = db.execute(
                    "SELECT r.key, r.value, r.created FROM rows r WHERE NOT EXISTS"
                    " (SELECT 1 FROM sync_keys s WHERE s.remote = ? AND s.key = r.key)"
                    " ORDER BY r.key",
                    (rid,),
                )
                with pq.ParquetWriter(local, schema, compression="zstd") as writer:
                    while batch := rows.fetchmany(BATCH_ROWS):
                        keys, values, created = zip(*batch, strict=True)
                        writer.write_table(
                            pa.table([list(keys), list(values), list(created)], schema=schema)
                        )
                        result.entries += len(batch)
            finally:
                db.execute("COMMIT")
            if not result.entries:
                result.seconds = time.perf_counter() - start
                return result
            name = f"{_sha256(local)}.parquet"
            target = remote.fs.join(remote.segments, name)
            result.bytes = local.stat().st_size
            if name not in on_remote:  # never overwrite (the same name holds the same bytes)
                # one PUT: the object appears whole or not at all
                _remote_call(remote, remote.fs.put_file, os.fspath(local), target)
            result.segments.append(name)
            with pq.ParquetFile(local) as segment:
                _mark(db, rid, segment, name, "pushed")
    finally:
        db.close()
    result.seconds = time.perf_counter() - start
    return result


def _mark(db: sqlite3.Connection, rid: int, segment, name: str, origin: str) -> None:
    """Record the segment's keys as on the remote, then the segment as done."""
    entries = 0
    for batch in segment.iter_batches(batch_size=BATCH_ROWS, columns=["key"]):
        keys = batch.column(0).to_pylist()
        entries += len(keys)
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR IGNORE INTO sync_keys VALUES (?, ?)", ((rid, k) for k in keys)
            )
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT OR IGNORE INTO sync_segments VALUES (?, ?, ?, ?, ?)",
            (rid, name, entries, origin, time.time()),
        )


def pull(remote: Remote, cache_dir: str | Path | None = None) -> Result:
    """Merge every remote segment this cache has not merged yet; keep every local entry."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    result = Result()
    names = list_segments(remote)
    path, db = connect(cache_dir)
    try:
        rid = _remote_id(db, remote)
        known = _known_segments(db, rid)
        todo = [n for n in names if n not in known]
        with tempfile.TemporaryDirectory(prefix="pull-", dir=path.parent) as tmp:
            for name in todo:
                where = remote.fs.join(remote.segments, name)
                shown = "/".join((*SEGMENTS, name))
                match = SEGMENT_NAME.match(name)
                if not match:
                    result.errors.append(
                        f"{remote.where()}: {shown} is not a segment (<sha256>.parquet): not"
                        " merged; remove it from the remote"
                    )
                    continue
                local = Path(tmp) / name
                _remote_call(remote, remote.fs.get_file, where, os.fspath(local))
                digest = _sha256(local)
                if digest != match.group(1):
                    result.errors.append(
                        f"{remote.where()}: segment {shown} is corrupt (its sha256 is"
                        f" {digest[:12]}...): not merged; remove it from the remote"
                    )
                    local.unlink()
                    continue
                try:
                    segment = pq.ParquetFile(local)
                except Exception:  # not parquet at all, though its name matches its bytes
                    segment = None
                if segment is None or not segment.schema_arrow.equals(_arrow_schema()):
                    result.errors.append(
                        f"{remote.where()}: segment {shown} does not hold row-cache entries"
                        f" (columns {', '.join(COLUMNS)}): not merged; remove it from the remote"
                    )
                    continue
                result.bytes += local.stat().st_size
                with segment:
                    added, present = _merge(db, rid, segment, name)
                result.entries += added
                result.skipped += present
                result.segments.append(name)
                local.unlink()
    finally:
        db.close()
    result.seconds = time.perf_counter() - start
    return result


def _merge(db: sqlite3.Connection, rid: int, segment, name: str) -> tuple[int, int]:
    """INSERT OR IGNORE a segment's entries in short transactions, each with its keys' record;
    the segment is recorded as merged last, so a killed pull merges it again (changing nothing
    that is already here)."""
    added = present = 0
    for batch in segment.iter_batches(batch_size=BATCH_ROWS, columns=list(COLUMNS)):
        keys = batch.column(0).to_pylist()
        rows = list(
            zip(keys, batch.column(1).to_pylist(), batch.column(2).to_pylist(), strict=True)
        )
        with db:
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO rows VALUES (?, ?, ?)", rows)
            new = db.total_changes - before
            db.executemany(
                "INSERT OR IGNORE INTO sync_keys VALUES (?, ?)", ((rid, k) for k in keys)
            )
        added += new
        present += len(rows) - new
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT OR IGNORE INTO sync_segments VALUES (?, ?, ?, ?, ?)",
            (rid, name, added + present, "pulled", time.time()),
        )
    return added, present


def status(remote: Remote, cache_dir: str | Path | None = None) -> dict[str, Any]:
    names = list_segments(remote)
    path, db = connect(cache_dir)
    try:
        rid = _remote_id(db, remote)
        known = _known_segments(db, rid)
        local = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        unpushed = db.execute(
            "SELECT COUNT(*) FROM rows r WHERE NOT EXISTS"
            " (SELECT 1 FROM sync_keys s WHERE s.remote = ? AND s.key = r.key)",
            (rid,),
        ).fetchone()[0]
    finally:
        db.close()
    return {
        "cache": str(path),
        "remote": remote.name,
        "url": remote.url,
        "local_entries": local,
        "not_pushed": unpushed,
        "remote_segments": len(names),
        "not_pulled": len([n for n in names if n not in known]),
    }
