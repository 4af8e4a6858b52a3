"""The team remote on a real S3 server (SeaweedFS): `dvc push`/`dvc pull` round-trip a tiny
real DVC repo, and a wrong key, a missing bucket or an unreachable endpoint give one clear error
line, never a traceback, from DVC and from `safeforge cache push|pull` (exit 2)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from helpers import run_cmd
from s3server import dvc_repo, free_ports, seaweedfs

from safeforge.cache import RowCache, cache_key

# botocore retries a refused connection for up to ~40 s (measured: `dvc push` to a closed port);
# one attempt gives the same error at once
NO_RETRIES = {"AWS_MAX_ATTEMPTS": "1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def repos(s3, tmp_path_factory) -> tuple[Path, Path]:
    """A pusher with one tracked file and a row-cache entry, both pushed to `store`; a git
    clone with no DVC cache. Both also know the remotes `nobucket` (a bucket that does not
    exist) and `down` (nothing listens at its endpoint)."""
    root = tmp_path_factory.mktemp("remote")
    pusher = dvc_repo(root / "pusher", s3, prefix="tiny")
    env = s3.env()
    (pusher / "data.txt").write_text("a tracked file\n")
    (pusher / "images").mkdir()
    for n in range(2):
        (pusher / "images" / f"{n}.txt").write_text(f"file {n} of a tracked folder\n")
    run_cmd(["dvc", "add", "data.txt", "images"], pusher, env=env)
    run_cmd(["git", "add", "-A"], pusher)
    run_cmd(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data"], pusher)
    run_cmd(["dvc", "push"], pusher, env=env)
    cache = RowCache("t", pusher / "rowcache")
    cache.put_many([(cache_key(kind="t", x=1), b"1")])
    cache.close()
    run_cmd(["safeforge", "cache", "push", "--cache-dir", "rowcache"], pusher, env=env)

    clone = root / "clone"
    run_cmd(["git", "clone", "-q", str(pusher), str(clone)], root)
    (down,) = free_ports(1)
    for repo in (pusher, clone):
        run_cmd(["dvc", "remote", "modify", "--local", "store", "endpointurl", s3.endpoint], repo)
        run_cmd(["dvc", "remote", "add", "nobucket", "s3://no-such-bucket/tiny"], repo)
        run_cmd(
            ["dvc", "remote", "modify", "--local", "nobucket", "endpointurl", s3.endpoint], repo
        )
        run_cmd(["dvc", "remote", "add", "down", f"s3://{s3.bucket}/tiny"], repo)
        run_cmd(
            [
                "dvc",
                "remote",
                "modify",
                "--local",
                "down",
                "endpointurl",
                f"http://127.0.0.1:{down}",
            ],
            repo,
        )
    return pusher, clone


def test_dvc_pull_in_a_clone_gives_the_same_bytes(repos, s3):
    pusher, clone = repos
    run_cmd(["dvc", "pull"], clone, env=s3.env())
    tracked = ["data.txt", "images/0.txt", "images/1.txt"]
    for rel in tracked:
        assert sha256(clone / rel) == sha256(pusher / rel), rel
    run_cmd(["git", "clean", "-qfx", "data.txt", "images"], clone)
    run_cmd(["rm", "-rf", ".dvc/cache"], clone)  # the error cases below pull from nothing


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CASES = {
    # case: (remote, env changes, DVC's first ERROR line (a regex), our line after the remote)
    "wrong_key": ("store", {"AWS_SECRET_ACCESS_KEY": "not-the-key"}, r"Forbidden|SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied", "access denied: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
    "missing_bucket": ("nobucket", {}, "The specified bucket does not exist", "bucket 'no-such-bucket' does not exist"),
    "no_keys": ("store", {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "Unable to locate credentials", "no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
    "unreachable": ("down", NO_RETRIES, "Could not connect to the endpoint URL", "cannot reach http://127.0.0.1:"),
}  # fmt: skip


def error_lines(proc: subprocess.CompletedProcess, prefix: str) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["push", "pull"])
def test_dvc_names_the_problem_in_its_first_error_line(repos, s3, case, command):
    pusher, clone = repos
    remote, changes, says, _ = CASES[case]
    repo = pusher if command == "push" else clone
    if command == "push" and case in ("wrong_key", "no_keys"):
        (repo / f"{case}.txt").write_text("not on the remote yet\n")
        run_cmd(["dvc", "add", f"{case}.txt"], repo, env=s3.env())
    proc = run_cmd(["dvc", command, "-r", remote], repo, env=s3.env(**changes), check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = error_lines(proc, "ERROR:")
    # DVC adds a summary line ("failed to pull data from the cloud") or its support link
    # to some of them; the first line names the cause
    assert errors and re.search(says, errors[0]), proc.stdout + proc.stderr


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["push", "pull"])
def test_safeforge_cache_gives_one_error_line_and_exit_2(repos, s3, case, command):
    pusher, _ = repos
    remote, changes, _, says = CASES[case]
    proc = run_cmd(
        ["safeforge", "cache", command, "--remote", remote, "--cache-dir", "rowcache"],
        pusher,
        env=s3.env(**changes),
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    url = "s3://no-such-bucket/tiny" if case == "missing_bucket" else f"s3://{s3.bucket}/tiny"
    assert proc.stderr.splitlines() == [
        line for line in proc.stderr.splitlines() if line.startswith("error:")
    ]
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: remote '{remote}' ({url}): {says}"), line


def test_safeforge_cache_without_a_remote_says_how_to_add_one(tmp_path):
    run_cmd(["git", "init", "-q"], tmp_path)
    run_cmd(["dvc", "init", "-q"], tmp_path)
    proc = run_cmd(["safeforge", "cache", "push"], tmp_path, check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and "dvc remote add -d" in line
