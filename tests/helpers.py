"""Helpers for tests that build real workspaces and run real commands."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from safeforge.backends.base import Sampling
from safeforge.config import compose, load_params

ROOT = Path(__file__).resolve().parents[1]
# conf/'s defaults as committed (test_contract checks params.yaml is conf/ composed)
PARAMS = load_params(ROOT / "params.yaml")
# the team's shared folder: beside the checkout, or named by SAFEFORGE_SHARED (e.g. in CI)
SHARED_SAMPLES = (
    Path(os.environ.get("SAFEFORGE_SHARED", ROOT.parent / "shared")) / "benchmarks" / "samples"
)


@cache
def _option(group: str, option: str) -> dict[str, Any]:
    return compose(overrides=[f"{group}={option}"])[group]


def conf_option(group: str, option: str, **changes: Any) -> dict[str, Any]:
    """conf/'s section for one option of a group, composed (e.g. ("judge", "vlm"), ("generator",
    "hf")), with `changes` on top: code repeats no default, so tests take theirs from here."""
    return {**copy.deepcopy(_option(group, option)), **changes}


def judge_conf(kind: str, **changes: Any) -> dict[str, Any]:
    """conf/judge/<kind>.yaml composed, less "kind" (what a judge's fit takes), with `changes`."""
    params = conf_option("judge", kind, **changes)
    assert params.pop("kind") == kind
    return params


def sampling(**changes: Any) -> Sampling:
    """conf/generator/hf.yaml's sampling, with `changes` on top."""
    return Sampling(**{**conf_option("generator", "hf")["sampling"], **changes})


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def make_repo_copy(dest: Path) -> Path:
    """A fresh git + DVC workspace holding the project's files (no data, no outputs' cache)."""
    for rel in tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, capture_output=True)
    commit_all(dest, "copy")
    return dest


def build_dag(dest: Path) -> tuple[Path, str]:
    """A fresh copy of the project with the whole DAG built from nothing; (repo, dvc's output)."""
    repo = make_repo_copy(dest)
    for out in ("metrics", "plots", "perf", "reports", "dvc.lock"):  # start from nothing
        target = repo / out
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    proc = run_cmd(["dvc", "repro"], repo)
    return repo, proc.stdout + proc.stderr


def commit_all(repo: Path, message: str) -> str:
    """`git add -A` and commit (an empty commit when nothing changed); the new commit's sha."""
    env = {**os.environ, **GIT_IDENTITY}
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "--allow-empty", "-m", message]):
        subprocess.run(cmd, cwd=repo, check=True, env=env, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    return head.stdout.strip()


def run_cmd(
    args: list[str], cwd: Path, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a command with the venv's bin first on PATH (stages call `python -m stages.x`)."""
    bin_dir = str(Path(sys.executable).parent)
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def data_outs(lock: dict) -> dict[str, str]:
    """md5 of every output under data/ in a dvc.lock (a folder's md5 covers each file in it)."""
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"].startswith("data/")
    }


def metrics(repo: Path, stage: str) -> dict:
    """A stage's metrics/<stage>.json in a workspace."""
    return json.loads((repo / "metrics" / f"{stage}.json").read_text())


def perf(repo: Path, stage: str) -> dict:
    """How a stage's last run went (seconds, row-cache hits and misses): perf/<stage>.json."""
    return json.loads((repo / "perf" / f"{stage}.json").read_text())
