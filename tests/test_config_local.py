"""conf/local/ (git-ignored) holds one machine's settings, such as benchmark roots: composed
last, by `safeforge params` and by `dvc exp run -S` alike."""

from __future__ import annotations

import shutil
import subprocess

from helpers import ROOT

from safeforge.config import compose


def test_a_local_override_sets_benchmark_roots_and_is_optional(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    assert compose(conf)["benchmarks"]["figstep"]["root"] is None
    (conf / "local").mkdir()
    (conf / "local" / "default.yaml").write_text(
        "benchmarks:\n  figstep:\n    root: /data/FigStep\n"
    )
    params = compose(conf)
    assert params["benchmarks"]["figstep"]["root"] == "/data/FigStep"
    assert params["benchmarks"]["figstep"]["adapter"] == "figstep"  # merged, not replaced
    # an override on the command line still wins over the local file
    argv = ["benchmarks.figstep.root=/other"]
    assert compose(conf, argv)["benchmarks"]["figstep"]["root"] == "/other"


def test_conf_local_is_ignored_by_git():
    out = subprocess.run(
        ["git", "check-ignore", "conf/local/default.yaml"], cwd=ROOT, capture_output=True
    )
    assert out.returncode == 0
