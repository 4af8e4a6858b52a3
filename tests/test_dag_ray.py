"""executor=ray end to end: the default DAG built from nothing with `dvc exp run -S executor=ray`
(a local Ray of 2 CPUs, a capped object store, no dashboard, started by each stage that has
misses) writes every data/ output byte for byte as the local build that committed dvc.lock
(tests/test_dag.py checks a local clean build against the same file), and a rerun with a warm
row cache never starts Ray."""

from __future__ import annotations

import shutil

import pytest
import yaml
from helpers import ROOT, data_outs, make_repo_copy, perf, run_cmd

pytest.importorskip("ray")
# a whole DAG from an empty row cache, its model work on Ray actors
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

RAY_STAGES = ("describe", "generate", "embed", "augment")  # their perf has the cache's stats


def test_the_dag_on_ray_writes_what_local_writes_and_a_warm_rerun_asks_ray_nothing(tmp_path):
    repo = make_repo_copy(tmp_path / "repo")
    for out in ("metrics", "perf", "plots", "reports", "dvc.lock"):  # start from nothing
        target = repo / out
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    env = {"SAFEFORGE_CACHE_DIR": str(tmp_path / "rows"), "RAY_USAGE_STATS_ENABLED": "0"}
    ray = ["-S", "executor=ray", "-S", "executor.local.num_cpus=2"]
    ray += ["-S", "executor.local.object_store_mb=200"]
    run_cmd(["dvc", "exp", "run", *ray], repo, env=env)

    assert yaml.safe_load((repo / "params.yaml").read_text())["executor"]["kind"] == "ray"
    for stage in RAY_STAGES:
        stats = perf(repo, stage)
        # every distinct miss went to Ray (a key asked twice counts twice as a miss)
        assert stats["ray_started"] == 1, (stage, stats)
        assert 0 < stats["ray_rows"] <= stats["cache_misses"], (stage, stats)
    built = data_outs(yaml.safe_load((repo / "dvc.lock").read_text()))
    committed = data_outs(yaml.safe_load((ROOT / "dvc.lock").read_text()))
    assert sorted(built) == sorted(committed)
    differ = sorted(p for p in built if built[p] != committed[p])
    assert not differ, f"executor=ray wrote other bytes than executor=local in {differ}"

    for stage in RAY_STAGES:
        run_cmd(["dvc", "repro", "--force", "--single-item", stage], repo, env=env)
        stats = perf(repo, stage)
        assert stats["cache_misses"] == 0 and stats["ray_started"] == 0, (stage, stats)
        assert stats["ray_rows"] == 0
