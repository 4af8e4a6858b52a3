"""Where the row cache's misses are computed: `executor.kind` local (default) or ray.

The executor is read from params.yaml but is deliberately not a DVC param of any stage, like
the cache's location: it never changes a result, so `dvc exp run -S executor=ray` on a built
workspace reruns nothing, and a rebuild under Ray writes byte for byte what a local one does
(tests/test_dag_ray.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safeforge.cache import Executor, LocalExecutor, use_executor
from safeforge.config import check_keys, stage_params
from safeforge.executors.ray import RayExecutor, RaySettings

KINDS = ("local", "ray")


def make_executor(section: Mapping[str, Any]) -> Executor:
    """An executor from params' `executor:` section (conf/executor/)."""
    kind = section.get("kind")
    if kind == "local":
        check_keys("executor (local)", section, ["kind"])
        return LocalExecutor()
    if kind == "ray":
        settings = {k: v for k, v in section.items() if k != "kind"}
        return RayExecutor(RaySettings.from_params(settings))
    raise ValueError(f"executor.kind={kind!r}: choose one of {list(KINDS)} (conf/executor/)")


def use_configured_executor(path: str | Path = "params.yaml") -> Executor:
    """Every row cache this process opens from now on computes its misses on params.yaml's
    executor. Ray, if chosen, starts only when a map has misses: a cached rerun never starts it."""
    executor = make_executor(stage_params(["executor"], path)["executor"])
    use_executor(executor)
    return executor
