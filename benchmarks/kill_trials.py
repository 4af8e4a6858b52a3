"""Crash safety, proved many times: SIGKILL a running stage at a random point, rerun, compare.

One uninterrupted reference `dvc repro` of the DAG on a folder source (the bundled photos), with
its own empty row cache, gives the expected bytes of every file under data/ and each stage's
wall time. Then each trial:

1. restores the reference workspace, deletes the outputs of the chosen stage and of every stage
   downstream of it, and DVC's run cache (so nothing is restored instead of computed), and gives
   the trial a fresh EMPTY row cache (so the kill lands mid-computation, not in a cached replay);
2. starts a plain `dvc repro`, waits for the stage's process (`python -m stages.<name>`), sleeps
   a random fraction of the stage's reference wall time and SIGKILLs the stage process, or in
   some trials the whole process group (dvc, its shell and the stage at once);
3. reruns a plain `dvc repro` to completion;
4. compares every file under data/ (names and sha256) with the reference, and runs
   `PRAGMA integrity_check` on the trial's row cache (after the kill and after the rerun).

    python benchmarks/kill_trials.py [--trials 10] [--seed 0]
        [--stages describe,generate,embed,score] [--keep DIR] [--images N]

Prints one line per trial and `kill trials: N, identical outputs: M, integrity ok: K`; exits 1
if any trial differs, fails its integrity check, or its rerun fails. `run_trials()` is the same
from Python (benchmarks/reliability.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STAGES = ("describe", "generate", "embed", "score")
# what the workspace holds besides data/ that a build writes (restored before each trial)
BUILT = ("data", "metrics", "perf", "plots", "reports", "dvc.lock", ".dvc/cache")
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
}


# ---- workspace ------------------------------------------------------------------------------
def _env(repo: Path, cache_dir: Path) -> dict[str, str]:
    """The venv first on PATH, the row cache in `cache_dir`, and the workspace's own src/ first
    on the import path: the stages run the code copied at the start, not a checkout that someone
    keeps editing while the trials run (the venv's editable install points at the checkout)."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **ENV,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo / "src"),
        "SAFEFORGE_CACHE_DIR": str(cache_dir),
    }


def _project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def make_workspace(dest: Path, images: int | None) -> Path:
    """A git + DVC copy of the project whose source is a folder of the bundled photos (as
    tests/test_dag_folder_source.py builds one), with nothing built."""
    from safeforge.sources.skimage_samples import export

    for rel in _project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    for out in BUILT:
        target = dest / out
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    exported = dest.parent / "exported"
    export(exported, min_images=1)
    folder = dest / "my_images"
    folder.mkdir()
    for image in sorted(exported.glob("*.png"))[:images]:
        shutil.copy(image, folder / image.name)
    shutil.rmtree(exported)
    env = _env(dest, dest.parent / "unused-cache")
    params = ["params", "source=folder", "source.dir=my_images"]
    subprocess.run([sys.executable, "-m", "safeforge.cli", *params], cwd=dest, env=env, check=True)
    git_env = {**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    git_env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, env=git_env, check=True, capture_output=True)
    return dest


def data_hashes(repo: Path) -> dict[str, str]:
    """sha256 of every file under data/, by path relative to the workspace."""
    found = {}
    for path in sorted((repo / "data").rglob("*")):
        if path.is_file():
            found[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def differences(expected: dict[str, str], got: dict[str, str]) -> list[str]:
    """What differs between two data_hashes() results: missing, extra and changed files."""
    out = [f"missing {p}" for p in sorted(expected.keys() - got.keys())]
    out += [f"extra {p}" for p in sorted(got.keys() - expected.keys())]
    out += [f"changed {p}" for p in sorted(expected.keys() & got.keys()) if expected[p] != got[p]]
    return out


def integrity(db: Path) -> str:
    """`PRAGMA integrity_check` of a row-cache file ('ok' when sound)."""
    if not db.exists():
        return "missing"
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)
    except sqlite3.DatabaseError as err:
        return f"error: {err}"


def cache_rows(db: Path) -> int | None:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    except sqlite3.DatabaseError:
        return None


def stage_outs(repo: Path) -> dict[str, list[str]]:
    """Each stage's outputs, from dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {s: [o["path"] for o in body.get("outs", [])] for s, body in lock.items()}


def downstream(repo: Path, stage: str) -> list[str]:
    """`stage` (a name or a foreach prefix like `score`) and every stage that depends on its
    outputs, directly or not (from dvc.lock's deps and outs)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    outs = {s: [o["path"] for o in b.get("outs", [])] for s, b in lock.items()}
    deps = {s: [d["path"] for d in b.get("deps", [])] for s, b in lock.items()}
    chosen = {s for s in lock if s == stage or s.startswith(f"{stage}@")}
    if not chosen:
        raise ValueError(f"no stage {stage!r} in dvc.lock ({sorted(lock)})")
    changed = True
    while changed:
        changed = False
        made = [o for s in chosen for o in outs[s]]
        for s in lock:
            if s not in chosen and any(
                d == o or d.startswith(o.rstrip("/") + "/") for d in deps[s] for o in made
            ):
                chosen.add(s)
                changed = True
    return [s for s in lock if s in chosen]


# ---- processes ------------------------------------------------------------------------------
def _stage_of(proc: psutil.Process, repo: Path) -> str | None:
    """The stage a process runs (`python -m stages.<name> [item]`) in `repo`, else None."""
    try:
        cmd = proc.cmdline()
        if "-m" not in cmd or proc.cwd() != str(repo):
            return None
        module = cmd[cmd.index("-m") + 1] if cmd.index("-m") + 1 < len(cmd) else ""
        if not module.startswith("stages.") or not proc.name().startswith("python"):
            return None
        name = module.removeprefix("stages.")
        rest = cmd[cmd.index("-m") + 2 :]
        return f"{name}@{rest[0]}" if rest else name
    except (psutil.Error, ValueError):
        return None


def stage_processes(root: psutil.Process, repo: Path) -> dict[str, psutil.Process]:
    try:
        children = root.children(recursive=True)
    except psutil.Error:
        return {}
    found = {}
    for child in children:
        name = _stage_of(child, repo)
        if name:
            found[name] = child
    return found


def start_repro(
    repo: Path, cache_dir: Path, log_path: Path, targets: Sequence[str] = ()
) -> subprocess.Popen:
    """A plain `dvc repro [targets]` in its own process group, output to `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115 (closed with the process, in finish())
    proc = subprocess.Popen(
        ["dvc", "repro", *targets],
        cwd=repo,
        env=_env(repo, cache_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a trial may kill all of it
    )
    proc._log = log  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, timeout: float = 1800) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        proc._log.close()  # type: ignore[attr-defined]


def timed_repro(
    repo: Path, cache_dir: Path, log_path: Path, targets: Sequence[str] = ()
) -> tuple[int, dict[str, float]]:
    """A plain `dvc repro`, watching each stage's process: (exit code, {stage: wall seconds})."""
    proc = start_repro(repo, cache_dir, log_path, targets)
    root = psutil.Process(proc.pid)
    seen: dict[str, list[float]] = {}
    while proc.poll() is None:
        now = time.perf_counter()
        for name in stage_processes(root, repo):
            seen.setdefault(name, [now, now])[1] = now
        time.sleep(0.05)
    return finish(proc), {name: end - start for name, (start, end) in seen.items()}


def wait_for_stage(
    proc: subprocess.Popen, repo: Path, stage: str, timeout: float = 900
) -> tuple[str, psutil.Process] | None:
    """The first process of `stage` (or of one of its foreach items) that `proc` starts."""
    root, deadline = psutil.Process(proc.pid), time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for name, child in stage_processes(root, repo).items():
            if name == stage or name.startswith(f"{stage}@"):
                return name, child
        time.sleep(0.01)
    return None


# ---- the trials -----------------------------------------------------------------------------
class Reference:
    """The uninterrupted build: the workspace, its data/ hashes, each stage's wall time."""

    def __init__(
        self,
        root: Path,
        images: int | None,
        say: Callable[[str], None],
        targets: Sequence[str] = (),
    ) -> None:
        self.repo = make_workspace(root / "repo", images)
        self.backup = root / "reference"
        self.targets = tuple(targets)
        start = time.perf_counter()
        code, self.seconds = timed_repro(
            self.repo, root / "reference-cache", root / "ref.log", self.targets
        )
        self.build_seconds = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"reference dvc repro exited {code}: see {root / 'ref.log'}")
        self.hashes = data_hashes(self.repo)
        self.lock = (self.repo / "dvc.lock").read_bytes()
        for name in BUILT:
            src = self.repo / name
            if src.is_dir():
                shutil.copytree(src, self.backup / name)
            elif src.exists():
                (self.backup / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, self.backup / name)
        timings = ", ".join(f"{s} {t:.1f}s" for s, t in self.seconds.items())
        say(f"reference build {self.build_seconds:.1f}s ({len(self.hashes)} files in data/)")
        say(f"stage wall times: {timings}")

    def restore(self) -> None:
        for name in BUILT:
            target = self.repo / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
            src = self.backup / name
            if src.is_dir():
                shutil.copytree(src, target)
            elif src.exists():
                shutil.copy2(src, target)
        # no run cache: DVC would restore a deleted output from it instead of running the stage
        shutil.rmtree(self.repo / ".dvc" / "cache" / "runs", ignore_errors=True)

    def forget(self, stage: str) -> None:
        """Delete a stage's outputs from the workspace and from DVC's cache: a present object
        would be checked out ("Stage 'x' is cached - skipping run"); the other stages' objects
        stay, since an output missing from the cache counts as changed and reruns its stage."""
        lock = yaml.safe_load((self.repo / "dvc.lock").read_text())["stages"][stage]
        for out in lock.get("outs", []):
            target = self.repo / out["path"]
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
            md5 = out.get("md5", "")
            obj = self.repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
            obj.unlink(missing_ok=True)


def one_trial(
    ref: Reference,
    trial: int,
    stage: str,
    rng: random.Random,
    root: Path,
    whole_downstream: bool = False,
) -> dict[str, Any]:
    repo = ref.repo
    ref.restore()
    stages = downstream(repo, stage)
    if not whole_downstream:  # the stage only: what follows reruns only if its inputs differ
        stages = [s for s in stages if s == stage or s.startswith(f"{stage}@")]
    for s in stages:
        ref.forget(s)
    cache_dir = root / f"cache-{trial}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True)
    db = cache_dir / "rows.sqlite"
    log_path = root / f"trial-{trial}.log"
    mode = "group" if rng.random() < 1 / 3 else "stage"
    fraction = rng.uniform(0.05, 0.95)

    result: dict[str, Any] = {"trial": trial, "stage": stage, "mode": mode, "rerun_stages": stages}
    start = time.perf_counter()
    proc = start_repro(repo, cache_dir, log_path, ref.targets)
    found = wait_for_stage(proc, repo, stage)
    if found is None:
        finish(proc)
        raise RuntimeError(f"trial {trial}: stage {stage} never started; see {log_path}")
    name, child = found
    duration = ref.seconds.get(name, 5.0)
    time.sleep(fraction * duration)
    result["kill_at_s"] = fraction * duration
    result["stage_seconds"] = duration
    try:
        result["landed"] = child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        if mode == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            child.send_signal(signal.SIGKILL)
    except (psutil.NoSuchProcess, ProcessLookupError):
        result["landed"] = False  # it ended in between: the trial still reruns and compares
    result["killed_exit"] = finish(proc)
    for leftover in psutil.process_iter():
        try:
            if _stage_of(leftover, repo):
                leftover.kill()  # belt and braces: nothing of the killed run may write on
        except psutil.NoSuchProcess:
            pass
    result["rows_at_kill"] = cache_rows(db)
    result["integrity_after_kill"] = integrity(db)

    code = finish(start_repro(repo, cache_dir, log_path, ref.targets))
    result["rerun_exit"] = code
    result["seconds"] = time.perf_counter() - start
    got = data_hashes(repo)
    diff = differences(ref.hashes, got)
    result["identical"] = code == 0 and not diff
    result["differences"] = diff
    result["lock_identical"] = (repo / "dvc.lock").read_bytes() == ref.lock
    result["rows_after"] = cache_rows(db)
    result["integrity"] = integrity(db)
    # no file: nothing written to damage (killed before its first batch; or score's probe,
    # which makes no cache-backed call at all)
    final_ok = ("ok", "missing") if not result["rows_after"] else ("ok",)
    result["integrity_ok"] = result["integrity"] in final_ok and result["integrity_after_kill"] in (
        "ok",
        "missing",
    )
    return result


def run_trials(
    n: int = 10,
    seed: int = 0,
    stages: Sequence[str] = DEFAULT_STAGES,
    keep: str | Path | None = None,
    images: int | None = None,
    say: Callable[[str], None] = print,
    whole_downstream: bool = False,
    targets: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Build the reference, run `n` kill trials (stages taken in turn, kill points drawn from
    `seed`), return one dict per trial (keys: trial, stage, mode, kill_at_s, rows_at_kill,
    identical, integrity_ok, differences, ...). `targets`: what `dvc repro` builds (default
    everything; tests build less)."""
    rng = random.Random(seed)
    tmp = None
    if keep:
        root = Path(keep).resolve()
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"--keep {root}: not empty")
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="kill-trials-")
        root = Path(tmp.name)
    try:
        ref = Reference(root, images, say, targets)
        say(HEADER)
        results = []
        for trial in range(1, n + 1):
            stage = stages[(trial - 1) % len(stages)]
            result = one_trial(ref, trial, stage, rng, root, whole_downstream)
            say(row(result))
            results.append(result)
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()


HEADER = (
    f"{'trial':>5} {'stage':10} {'kill':5} {'kill point (s)':>14} {'rows in cache at kill':>21}"
    f" {'identical':>9} {'integrity ok':>12} {'trial s':>7}"
)


def row(r: dict[str, Any]) -> str:
    point = f"{r['kill_at_s']:.2f}/{r['stage_seconds']:.1f}"
    rows = f"{r['rows_at_kill']}/{r['rows_after']}"
    line = (
        f"{r['trial']:>5} {r['stage']:10} {r['mode']:5} {point:>14} {rows:>21}"
        f" {'yes' if r['identical'] else 'NO':>9} {'yes' if r['integrity_ok'] else 'NO':>12}"
        f" {r['seconds']:>7.1f}"
    )
    if not r["landed"]:
        line += "  (stage had ended before the kill)"
    if r["rerun_exit"] != 0:
        line += f"  rerun exited {r['rerun_exit']}"
    if r["differences"]:
        line += "  " + ", ".join(r["differences"][:5])
    if not r["integrity_ok"]:
        line += f"  integrity: {r['integrity_after_kill']} / {r['integrity']}"
    return line


def totals(results: Sequence[dict[str, Any]]) -> str:
    same = sum(r["identical"] for r in results)
    sound = sum(r["integrity_ok"] for r in results)
    return f"kill trials: {len(results)}, identical outputs: {same}, integrity ok: {sound}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES))
    parser.add_argument("--keep", help="build in this (new or empty) folder and keep it")
    parser.add_argument("--images", type=int, help="only the first N bundled photos")
    parser.add_argument(
        "--downstream",
        action="store_true",
        help="also delete the outputs of every stage after the killed one (slower): by default"
        " only the killed stage's are, and what follows reruns only if its inputs differ",
    )
    parser.add_argument("--targets", default="", help="dvc repro targets (default: all)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run_trials(
        args.trials,
        args.seed,
        [s for s in args.stages.split(",") if s],
        args.keep,
        args.images,
        lambda line: print(line, flush=True),
        args.downstream,
        [t for t in args.targets.split(",") if t],
    )
    print(totals(results))
    print(f"wall time {time.perf_counter() - start:.0f}s")
    ok = all(r["identical"] and r["integrity_ok"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
