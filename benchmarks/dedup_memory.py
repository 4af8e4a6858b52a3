"""Peak memory and time of the dedup and quality stages at 35k and 1M records, each stage run
as DVC runs it (`python -m stages.<name>` in a workspace), on synthetic inputs with planted
duplicates (benchmarks/synthetic_rows.py). Peak memory is the child's max RSS (wait4).

    python benchmarks/dedup_memory.py [--rows 35000 1000000] [--keep /tmp/ws]

Goal (issue 5): under 4 GiB at 1M rows, growing no faster than the rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safeforge import io

REPO = Path(__file__).resolve().parents[1]
STAGES = ("dedup", "quality")


def run_stage(stage: str, workspace: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one stage run in `workspace`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "SAFEFORGE_LOG_LEVEL": "WARNING"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"stages.{stage}"], cwd=workspace, env=env, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"stage {stage} failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[35_000, 1_000_000])
    parser.add_argument("--keep", type=Path, help="write the workspaces here and keep them")
    args = parser.parse_args()

    results = {}
    for rows in args.rows:
        root = Path(tempfile.mkdtemp(prefix=f"sf-mem-{rows}-", dir=args.keep))
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
        start = time.perf_counter()
        # in a child process: a forked child's max RSS starts from its parent's, so this
        # process must stay small for the stages' peaks to be theirs
        subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks/synthetic_rows.py"),
                str(root),
                "--rows",
                str(rows),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"{rows:>9,} records: inputs written in {time.perf_counter() - start:.0f}s")
        for stage in STAGES:
            seconds, peak = run_stage(stage, root)
            metrics = io.read_json(root / f"metrics/{stage}.json")
            results[rows, stage] = peak
            print(
                f"  {stage:8s} {seconds:7.1f}s  {rows / seconds:9,.0f} rows/s  "
                f"peak {peak:7,.0f} MiB  dropped {metrics['dropped']}"
            )
        if args.keep is None:
            shutil.rmtree(root)

    if len(args.rows) >= 2:
        small, large = min(args.rows), max(args.rows)
        print(f"\nrows x{large / small:.1f}:")
        for stage in STAGES:
            ratio = results[large, stage] / results[small, stage]
            print(
                f"  {stage:8s} peak memory x{ratio:.1f} "
                f"({results[large, stage] / 1024:.2f} GiB at {large:,} rows; goal < 4 GiB)"
            )


if __name__ == "__main__":
    main()
