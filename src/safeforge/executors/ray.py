"""Ray Data computes the row cache's misses: the driver keys the rows and reads the hits
(cache.RowCache.map), ships only the misses, and commits each batch that streams back.

A map's misses become `ray.data.from_items` rows (position, item); `map_batches` runs them on
`concurrency` actors of `RowWorker`, each built once with the map's compute function (its model
object travels unloaded, safeforge.shippable, and loads on the actor, once); every output row
comes back encoded as the cache stores it, with its position, through `iter_batches`. Workers
never open the SQLite file. A chat backend (hf, vllm) is such a model: `concurrency` actors of
`num_gpus` each, each with its own engine; an OpenAI-compatible server's client sends through
ray.data.llm's HTTP processor instead (backends/ray_http.py).

Ray starts on the first map with misses: `ray.init()` attaches to `address`, else to
RAY_ADDRESS, else starts a local Ray with `local.num_cpus` and `local.object_store_mb`. A fully
cached rerun never starts it. Ray moves items and functions between processes with
(cloud)pickle, as every Ray program does: only this process's own objects, never a file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from safeforge.config import check_keys, from_section

log = logging.getLogger(__name__)

INSTALL = "executor=ray needs Ray Data: pip install 'safeforge[ray]' (or 'ray[data]')"


@dataclass(frozen=True)
class RaySettings:
    """conf/executor/ray.yaml less `kind`."""

    address: str | None
    concurrency: int
    num_cpus: float
    num_gpus: float
    local: Mapping[str, Any]
    servers: Sequence[str]

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RaySettings:
        settings = from_section(cls, "executor (ray)", params)
        check_keys("executor.local", settings.local, ["num_cpus", "object_store_mb"])
        if settings.concurrency < 1:
            raise ValueError(f"executor.concurrency={settings.concurrency}: need >= 1")
        return settings


class Opaque:
    """An item as the Python object it is: Ray Data would turn a bare int, tuple or dict into
    Arrow types (numpy ints, arrays, structs with nulls); this it keeps as an object column."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item


class RowWorker:
    """One Ray actor: built once with a map's compute function, then batch after batch."""

    def __init__(self, compute: Callable[[list[Any]], list[Any]], encode: Callable) -> None:
        self.compute, self.encode = compute, encode
        load = getattr(getattr(compute, "__self__", None), "load", None)
        if load is not None:  # a backend's bound `complete`: its model loads now, once
            load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [row.item for row in batch["item"]]
        outputs = self.compute(items)
        if len(outputs) != len(items):
            raise RuntimeError(f"compute returned {len(outputs)} results for {len(items)} inputs")
        values = np.empty(len(outputs), dtype=object)
        values[:] = [self.encode(o) for o in outputs]
        return {"position": batch["position"], "value": values}


def local_torch_threads() -> int:
    """torch's thread count in this process: what a local run computes with."""
    import torch

    return torch.get_num_threads()


class RayExecutor:
    name = "ray"

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.started = False

    def stats(self) -> dict[str, int]:
        return {"ray_started": int(self.started)}

    def start(self) -> Any:
        """Ray, attached or started once per process."""
        try:
            import ray
        except ImportError as exc:
            raise ImportError(INSTALL) from exc
        if not ray.is_initialized():
            s = self.settings
            quiet = {"include_dashboard": False, "log_to_driver": False}
            address = s.address or os.environ.get("RAY_ADDRESS")
            if address:
                log.info("ray: attaching to %s", address)
                ray.init(address=address, **quiet)
            else:
                store_mb = s.local["object_store_mb"]
                ray.init(
                    # "local": a Ray of this process's own, never a cluster `ray start` left
                    # in /tmp/ray (which a bare ray.init() would try to join)
                    address="local",
                    num_cpus=s.local["num_cpus"],
                    object_store_memory=None if store_mb is None else int(store_mb) * 2**20,
                    **quiet,
                )
            self.started = True
        # Ray Data says, for each map, that the Opaque column is kept as Python objects: intended
        logging.getLogger("ray.data._internal.tensor_extensions.arrow").setLevel(logging.ERROR)
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-operator metrics at DEBUG
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the row cache's own bar counts committed rows
        context.execution_options.preserve_order = True  # commits in input order
        return ray

    def batches(
        self,
        items: Sequence[Any],
        compute: Callable[[list[Any]], list[Any]],
        batch_size: int,
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
    ) -> Iterator[tuple[list[int], list[Any], list[bytes]]]:
        if not items:
            return
        ray = self.start()
        s = self.settings
        model = getattr(compute, "__self__", None)  # a chat backend, for its bound `complete`
        if hasattr(model, "ray_batches"):  # a server's client: ray.data.llm sends its requests
            yield from model.ray_batches(ray, items, batch_size, s.concurrency, s.servers)
            return
        rows = ray.data.from_items(
            [{"position": i, "item": Opaque(x)} for i, x in enumerate(items)]
        )
        done = rows.map_batches(
            RowWorker,
            fn_constructor_kwargs={"compute": compute, "encode": encode},
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=s.concurrency),
            num_cpus=s.num_cpus,
            num_gpus=s.num_gpus if hasattr(model, "load") else 0,
            batch_format="numpy",
            # Ray gives an actor OMP_NUM_THREADS=num_cpus; a CPU model's float sums follow the
            # thread count into their last bits, so actors run torch as this process would
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(local_torch_threads())}},
        )
        for out in done.iter_batches(batch_size=None, batch_format="numpy"):
            blobs = list(out["value"])
            yield out["position"].tolist(), [decode(b) for b in blobs], blobs
