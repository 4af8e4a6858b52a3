"""`safeforge cache push|pull`: the row cache shared through the DVC remote, on a real S3 server
(SeaweedFS), through real DVC config. Each test has its own cache folders ("machines") and its
own prefix in the bucket."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import run_cmd
from s3server import dvc_repo, seaweedfs

from safeforge import cache_sync
from safeforge.cache import RowCache, cache_key, json_codec


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def repo(tmp_path, s3, monkeypatch, request) -> Path:
    for name, value in s3.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return dvc_repo(tmp_path / "repo", s3, prefix=request.node.name)


def compute_squares(items: list[int], cache_dir: Path, calls: list[int] | None = None):
    """RowCache.map over `items` as a stage would; returns (results, hits/misses)."""
    encode, decode = json_codec()
    cache = RowCache("sq", cache_dir)

    def compute(batch: list[int]) -> list[int]:
        if calls is not None:
            calls.extend(batch)
        return [x * x for x in batch]

    out = cache.map(items, lambda x: cache_key(kind="sq", x=x), compute, encode, decode)
    stats = cache.stats()
    cache.close()
    return out, stats


def entries(cache_dir: Path) -> dict[str, bytes]:
    with sqlite3.connect(cache_dir / "rows.sqlite") as db:
        return dict(db.execute("SELECT key, value FROM rows"))


def segments(repo: Path) -> list[str]:
    remote = cache_sync.open_remote(repo_dir=repo)
    return [n for n in cache_sync.list_segments(remote) if n.endswith(".parquet")]


def push(repo: Path, cache_dir: Path) -> cache_sync.Result:
    return cache_sync.push(cache_sync.open_remote(repo_dir=repo), cache_dir)


def pull(repo: Path, cache_dir: Path) -> cache_sync.Result:
    return cache_sync.pull(cache_sync.open_remote(repo_dir=repo), cache_dir)


def test_entries_pushed_by_one_machine_are_cache_hits_on_another(repo, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    compute_squares(list(range(300)), a)
    sent = push(repo, a)
    assert sent.entries == 300 and len(sent.segments) == 1
    name = sent.segments[0]
    assert segments(repo) == [name]

    got = pull(repo, b)
    assert (got.entries, got.skipped, got.segments) == (300, 0, [name])
    calls: list[int] = []
    out, stats = compute_squares(list(range(300)), b, calls)
    assert out == [x * x for x in range(300)]
    assert calls == [] and stats == {"cache_hits": 300, "cache_misses": 0}
    assert entries(b) == entries(a)

    # the segment is named by the sha256 of its bytes
    remote = cache_sync.open_remote(repo_dir=repo)
    fs = remote.fs
    data = fs.cat_file(fs.join(remote.segments, name))
    assert name == hashlib.sha256(data).hexdigest() + ".parquet"
    assert not data.startswith(b"\x80")  # parquet ("PAR1"), never pickle
    assert data[:4] == b"PAR1"


def test_pulling_twice_changes_nothing_and_pulled_entries_are_not_pushed_back(repo, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    compute_squares(list(range(50)), a)
    push(repo, a)
    assert pull(repo, b).entries == 50
    before = entries(b)

    again = pull(repo, b)
    assert (again.entries, again.segments) == (0, [])
    assert entries(b) == before
    back = push(repo, b)
    assert (back.entries, back.segments) == (0, [])
    assert len(segments(repo)) == 1
    # nor does the pusher send them twice
    assert push(repo, a).entries == 0


def test_a_local_entry_is_never_overwritten_by_a_pull(repo, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    compute_squares(list(range(20)), a)
    push(repo, a)
    mine = cache_key(kind="sq", x=7)
    cache = RowCache("sq", b)
    cache.put_many([(mine, b"49.0")])  # B computed x=7 itself, another way
    cache.close()

    got = pull(repo, b)
    assert (got.entries, got.skipped) == (19, 1)
    assert entries(b)[mine] == b"49.0"
    assert len(entries(b)) == 20
    # the remote already has that key: B does not send its own value
    assert push(repo, b).entries == 0


def test_two_pushes_make_two_segments_and_a_third_machine_pulls_both(repo, tmp_path):
    a, c = tmp_path / "a", tmp_path / "c"
    compute_squares(list(range(100)), a)
    first = push(repo, a)
    compute_squares(list(range(200)), a)  # 100 new entries
    second = push(repo, a)
    assert (first.entries, second.entries) == (100, 100)
    assert sorted(segments(repo)) == sorted(first.segments + second.segments)
    assert len(set(first.segments + second.segments)) == 2

    got = pull(repo, c)
    assert got.entries == 200 and sorted(got.segments) == sorted(segments(repo))
    assert entries(c) == entries(a)


def test_corrupt_renamed_or_foreign_segments_are_refused_by_name(repo, tmp_path, s3):
    a, b = tmp_path / "a", tmp_path / "b"
    compute_squares(list(range(30)), a)
    bad = push(repo, a).segments[0]
    compute_squares(list(range(60)), a)
    good = push(repo, a).segments[0]
    remote = cache_sync.open_remote(repo_dir=repo)
    fs = remote.fs
    data = fs.cat_file(fs.join(remote.segments, good))
    corrupt = bytearray(fs.cat_file(fs.join(remote.segments, bad)))
    corrupt[len(corrupt) // 2] ^= 0xFF
    fs.pipe_file(fs.join(remote.segments, bad), bytes(corrupt))  # bit rot in place
    renamed = "0" * 64 + ".parquet"
    fs.pipe_file(fs.join(remote.segments, renamed), data)  # a good segment, wrong name
    fs.pipe_file(fs.join(remote.segments, "notes.txt"), b"hello")

    proc = run_cmd(
        ["safeforge", "cache", "pull", "--cache-dir", str(b)], repo, env=s3.env(), check=False
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, proc.stderr
    assert any(f"segments/{bad} is corrupt" in e for e in errors), errors
    assert any(f"segments/{renamed} is corrupt" in e for e in errors), errors
    assert any("segments/notes.txt is not a segment" in e for e in errors), errors
    assert "Traceback" not in proc.stderr
    # the good segment is merged, none of the others
    assert set(entries(b)) == {cache_key(kind="sq", x=x) for x in range(30, 60)}
    # and they are refused again next time, merging nothing
    again = run_cmd(
        ["safeforge", "cache", "pull", "--cache-dir", str(b)], repo, env=s3.env(), check=False
    )
    assert again.returncode == 2 and len(entries(b)) == 30


def test_wrong_keys_are_one_error_line_and_exit_2(repo, tmp_path, s3):
    """(tests/test_remote.py goes through every set-up failure, for DVC and for these commands)"""
    compute_squares(list(range(5)), tmp_path / "a")
    proc = run_cmd(
        ["safeforge", "cache", "push", "--cache-dir", str(tmp_path / "a")],
        repo,
        env=s3.env(AWS_SECRET_ACCESS_KEY="wrong"),
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: remote 'store' (s3://{s3.bucket}/{repo_prefix(repo)}): access denied:"
        " check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    ]
    assert segments(repo) == []


def repo_prefix(repo: Path) -> str:
    return cache_sync.open_remote(repo_dir=repo).path.split("/", 1)[1]


def test_status_counts_what_is_not_pushed_or_pulled(repo, tmp_path, s3):
    a, b = tmp_path / "a", tmp_path / "b"
    compute_squares(list(range(10)), a)
    push(repo, a)
    compute_squares(list(range(15)), a)
    compute_squares(list(range(3)), b)
    proc = run_cmd(
        ["safeforge", "cache", "status", "--json", "--cache-dir", str(b)], repo, env=s3.env()
    )
    info = json.loads(proc.stdout)
    assert info["local_entries"] == 3 and info["not_pushed"] == 3
    assert info["remote_segments"] == 1 and info["not_pulled"] == 1
    remote = cache_sync.open_remote(repo_dir=repo)
    assert cache_sync.status(remote, a)["not_pushed"] == 5


def test_dvc_gc_cloud_removes_unused_data_and_keeps_every_segment(repo, tmp_path, s3):
    """`dvc gc -c` lists only its own object layout; the segments prefix is not in it."""
    a, b = tmp_path / "a", tmp_path / "b"
    env = s3.env()
    (repo / "data.txt").write_text("v1\n")
    run_cmd(["dvc", "add", "data.txt"], repo, env=env)
    run_cmd(["dvc", "push"], repo, env=env)
    (repo / "data.txt").write_text("v2\n")
    run_cmd(["dvc", "add", "data.txt"], repo, env=env)
    run_cmd(["dvc", "push"], repo, env=env)
    compute_squares(list(range(40)), a)
    before = push(repo, a).segments

    gc = run_cmd(["dvc", "gc", "--workspace", "--cloud", "--force"], repo, env=env)
    assert "Removed 1 objects from remote" in gc.stdout + gc.stderr  # v1 went
    assert segments(repo) == before
    assert pull(repo, b).entries == 40


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from safeforge.cache import RowCache, cache_key, json_codec
    folder, me, rounds, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.001)
    cache = RowCache("t", folder)
    encode, _ = json_codec()
    for i in range(rounds):
        if i == rounds // 2:  # half way, wait for a push to have happened meanwhile
            while not list(Path(folder).glob("pushed-*")):
                time.sleep(0.001)
        cache.put_many([(cache_key(w=me, i=i, j=j), encode([me, i, j])) for j in range(1 + i % 3)])
    """
)
PUSHER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from safeforge import cache_sync
    folder, repo, go, writers = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    remote = cache_sync.open_remote(repo_dir=repo)
    while not go.exists():
        time.sleep(0.001)
    # push over and over while the writers write, until they are done
    pushes = 0
    while len(list(Path(folder).glob("done-*"))) < writers or pushes < 2:
        pushes += 1
        if cache_sync.push(remote, folder).entries:
            Path(folder, f"pushed-{pushes}").touch()
    print(pushes)
    """
)


def test_writers_and_a_push_at_once_lose_nothing(repo, tmp_path, s3):
    """Two queued experiments writing the cache while a push runs: no process fails on a locked
    database, and what the push missed (written after its snapshot) goes with the next push."""
    cache, go, writers, rounds = tmp_path / "a", tmp_path / "go", 3, 300
    cache.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER + f"\nPath({str(cache)!r}, 'done-{me}').touch()\n",
                str(cache),
                str(me),
                str(rounds),
                str(go),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(writers)
    ]
    pusher = subprocess.Popen(
        [sys.executable, "-c", PUSHER, str(cache), str(repo), str(go), str(writers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=s3.env(),
    )
    time.sleep(1.0)
    go.touch()
    outs = [p.communicate(timeout=300) for p in [*procs, pusher]]
    assert [p.returncode for p in [*procs, pusher]] == [0] * (writers + 1), outs
    assert not any("locked" in err for _, err in outs), outs
    assert int(outs[-1][0]) >= 2

    written = writers * sum(1 + i % 3 for i in range(rounds))
    assert len(entries(cache)) == written
    push(repo, cache)  # whatever the last concurrent push did not see
    assert len(segments(repo)) >= 2  # a push sent half the writes or less, a later one the rest
    fresh = tmp_path / "fresh"
    pull(repo, fresh)
    assert entries(fresh) == entries(cache)
