"""One table of what the reliability suite proves, each figure measured in this run:

- bad inputs: the ingest bad-input corpus (tests/images/test_ingest_bad_inputs.py), each class
  quarantined with its reason or normalised as the README documents;
- kill trials: benchmarks/kill_trials.py, a stage SIGKILLed mid-run, the rerun's data/ compared
  byte for byte with an uninterrupted build, the row cache's SQLite integrity_check;
- HTTP faults: the misbehaving loopback server (tests/backends/chat_server.py) against the
  openai backend, each fault retried or dropped with its reason within a bounded time;
- rows lost: rows of an uninterrupted build missing after a killed one, plus rows a fault test
  found missing (each of those tests asserts every row comes back, answered or with a reason);
- dedup: pairwise precision and recall on the synthetic and the real-photo corpus
  (benchmarks/dedup_images.py; the real one needs `make bench-setup` and Debian's archive).

    python benchmarks/reliability.py [--trials 10] [--n 2000] [--no-dedup]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
import dedup_images
import kill_trials

ROOT = Path(__file__).resolve().parents[1]
BAD_INPUTS = "tests/images/test_ingest_bad_inputs.py::test_bad_input"
FAULTS = (
    "tests/backends/test_openai.py",
    "fault or http_500 or 429 or dropped or timeout or no_server or empty_choices or garbage",
)


def pytest_counts(target: str, keyword: str | None = None) -> tuple[int, int, list[str]]:
    """(tests run, passed, names of the failed) of one pytest selection, from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider"]
        cmd += ["-k", keyword] if keyword else []
        subprocess.run([*cmd, f"--junitxml={report}"], cwd=ROOT, capture_output=True, check=False)
        cases = ET.parse(report).getroot().iter("testcase")
        failed, run = [], 0
        for case in cases:
            if case.find("skipped") is not None:
                continue
            run += 1
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(case.get("name", "?"))
    return run, run - len(failed), failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="kill trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=2000, help="images per dedup corpus")
    parser.add_argument("--no-dedup", action="store_true", help="leave out the dedup corpora")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []

    tried, handled, failed = pytest_counts(BAD_INPUTS)
    rows.append(("bad inputs tried / handled as documented", f"{tried} / {handled}", failed))

    results = kill_trials.run_trials(args.trials, args.seed)
    identical = sum(r["identical"] for r in results)
    sound = sum(r["integrity_ok"] for r in results)
    rows.append(("kill trials / identical data/ outputs", f"{len(results)} / {identical}", []))
    rows.append(("kill trials / row cache integrity_check ok", f"{len(results)} / {sound}", []))

    injected, survived, fault_failed = pytest_counts(*FAULTS)
    rows.append(("HTTP fault tests / survived", f"{injected} / {survived}", fault_failed))
    lost = sum(len(r["differences"]) for r in results if not r["identical"])
    lost_note = "0" if not lost and not fault_failed else f"UNKNOWN: {lost} data/ files differ"
    rows.append(("rows lost", lost_note, fault_failed))

    if not args.no_dedup:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("synthetic", "real"):
                corpus, folder = dedup_images.corpus_in(Path(tmp), kind, args.n, args.seed)
                s = dedup_images.quality(kind, corpus, folder)[dedup_images.DEFAULT_LABEL]
                per = ", ".join(f"{t} {s[t]:.3f}" for t in dedup_images.TRANSFORMS if t in s)
                rows.append(
                    (
                        f"dedup, {kind} corpus ({corpus.height} images): precision / recall",
                        f"{s['precision']:.4f} / {s['recall']:.4f} ({per})",
                        [],
                    )
                )

    table = pl.DataFrame({"check": [r[0] for r in rows], "result": [r[1] for r in rows]})
    print()
    with pl.Config(
        tbl_rows=-1, fmt_str_lengths=200, tbl_width_chars=220, tbl_hide_dataframe_shape=True
    ):
        print(table)
    for check, _, names in rows:
        if names:
            print(f"  {check}: failed {', '.join(names)}")
    print(f"in {time.perf_counter() - start:.0f}s")
    ok = all(not names for _, _, names in rows) and identical == sound == len(results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
