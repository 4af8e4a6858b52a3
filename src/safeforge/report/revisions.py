"""Revisions for the pull-request report: git revisions, DVC experiment names, the workspace,
and a base that a shallow CI checkout lacks (fetched from origin first)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WORKSPACE = "workspace"  # DVC's name for the working tree, as its diffs label it
SHA = re.compile(r"[0-9a-f]{40}")


class PrReportError(Exception):
    """The report cannot be made (a revision not found, a dvc command failed): one line."""


@dataclass(frozen=True)
class Rev:
    given: str  # what was asked for
    arg: str | None  # what dvc is given (None: the workspace)
    sha: str | None  # the commit (None: the workspace)
    note: str = ""  # how it was found, when that is worth saying

    @property
    def label(self) -> str:
        return self.arg or WORKSPACE

    def describe(self) -> str:
        where = f" ({self.sha[:12]})" if self.sha else ""
        return f"`{self.label}`{where}" + (f", {self.note}" if self.note else "")


# ---- git and dvc ----------------------------------------------------------------------------
def run_git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)


def run_dvc(repo: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    # the dvc of this interpreter's environment, whatever PATH says
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        raise PrReportError(f"`dvc {' '.join(args)}` failed: {lines[-1] if lines else '?'}")
    return proc.stdout


def repo_root(start: Path) -> Path:
    proc = run_git(start, "rev-parse", "--show-toplevel")
    if proc.returncode != 0:
        raise PrReportError(f"{start} is not inside a git repository")
    return Path(proc.stdout.strip())


def commit_of(repo: Path, rev: str) -> str | None:
    proc = run_git(
        repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def experiment_commit(repo: Path, name: str) -> str | None:
    """The commit of the DVC experiment `name` (refs/exps/<baseline>/<name>): the one based on
    HEAD when several share the name, as `dvc exp` resolves it."""
    refs = run_git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps/")
    found: dict[str, str] = {}  # baseline commit -> experiment commit
    for line in refs.stdout.splitlines():
        ref, sha = line.split()
        parts = ref.split("/")  # refs, exps, sha[:2], sha[2:], name
        if len(parts) == 5 and parts[4] == name and len(parts[2]) == 2:
            found[parts[2] + parts[3]] = sha
    head = commit_of(repo, "HEAD")
    if head in found:
        return found[head]
    if len(set(found.values())) > 1:
        raise PrReportError(
            f"experiment name {name!r} is ambiguous: it exists on baselines "
            f"{sorted(b[:7] for b in found)}; give the commit instead"
        )
    return next(iter(found.values()), None)


def _fetch(repo: Path, rev: str) -> tuple[str | None, str]:
    """Fetch `rev` from origin (a shallow CI checkout has only the head); return the ref that
    now resolves, or None, and what was tried."""
    if run_git(repo, "remote", "get-url", "origin").returncode != 0:
        return None, "there is no remote named origin to fetch it from"
    shallow = run_git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    depth = ["--depth=1"] if shallow else []  # never make a complete clone shallow
    branch = rev
    for prefix in ("refs/remotes/origin/", "origin/", "refs/heads/"):
        if rev.startswith(prefix):
            branch = rev[len(prefix) :]
            break
    refspec = f"+refs/heads/{branch}:refs/remotes/origin/{branch}"
    tried = [f"git fetch {' '.join(depth)} origin {refspec}".replace("  ", " ")]
    proc = run_git(repo, "fetch", "--quiet", *depth, "origin", refspec)
    if proc.returncode == 0:
        log.info("%s was not in this checkout: fetched it from origin (%s)", rev, tried[0])
        return f"origin/{branch}", tried[0]
    if SHA.fullmatch(rev):
        tried.append(f"git fetch {' '.join(depth)} origin {rev}".replace("  ", " "))
        if run_git(repo, "fetch", "--quiet", *depth, "origin", rev).returncode == 0:
            log.info("%s was not in this checkout: fetched it from origin (%s)", rev, tried[-1])
            return rev, tried[-1]
    return None, "tried " + " and ".join(f"`{t}`" for t in tried)


def resolve(repo: Path, rev: str | None, fetch: bool) -> Rev:
    """A git revision, a DVC experiment name, or None/"workspace" for the working tree."""
    if rev is None or rev == WORKSPACE:
        return Rev(WORKSPACE, None, None)
    if not rev or rev.startswith("-"):
        raise PrReportError(f"revision {rev!r} is not a revision")
    sha = commit_of(repo, rev)
    if sha:
        return Rev(rev, rev, sha)
    sha = experiment_commit(repo, rev)
    if sha:  # dvc takes experiment names itself: its tables keep the name
        return Rev(rev, rev, sha, "a DVC experiment")
    reason = "it is neither a git revision nor a DVC experiment here"
    if fetch:
        ref, tried = _fetch(repo, rev)
        sha = commit_of(repo, ref) if ref else None
        if sha:
            return Rev(rev, ref, sha, f"fetched from origin into this shallow checkout ({tried})")
        reason += f", and fetching it failed: {tried}"
    raise PrReportError(f"revision {rev!r} not found: {reason}")
