"""Helpers for tests that build real workspaces and run real commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from safeforge.config import load_params

ROOT = Path(__file__).resolve().parents[1]
# the team's shared folder: beside the checkout, or named by SAFEFORGE_SHARED (e.g. in CI)
# conf/'s defaults as committed (test_contract checks params.yaml is conf/ composed)
PARAMS = load_params(ROOT / "params.yaml")
SHARED_SAMPLES = (
    Path(os.environ.get("SAFEFORGE_SHARED", ROOT.parent / "shared")) / "benchmarks" / "samples"
)


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def make_repo_copy(dest: Path) -> Path:
    """A fresh git + DVC workspace holding the project's files (no data, no outputs' cache)."""
    for rel in tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)
    return dest


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
