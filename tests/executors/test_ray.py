"""The Ray executor: a real local Ray (2 CPUs, a capped object store, no dashboard) computes the
row cache's misses; the driver keeps the keys, the hits and every commit."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from backends.chat_server import chat_server, free_port, transformers_serve
from helpers import ROOT, conf_option, sampling

from safeforge.backends import ChatRequest
from safeforge.backends.cached import cached_complete
from safeforge.backends.openai import OpenAIBackend
from safeforge.cache import LocalExecutor, RowCache, cache_key, json_codec
from safeforge.embeddings.text import TextEncoder, encode_cached
from safeforge.executors import make_executor
from safeforge.executors.ray import INSTALL, RayExecutor, RaySettings
from safeforge.io import sha256_file
from safeforge.perception.nsfw import NsfwModel, nsfw_cached
from safeforge.perception.ocr import OcrReader, ocr_cached
from safeforge.sources.skimage_samples import export

pytest.importorskip("ray")
LOCAL = {"num_cpus": 2, "object_store_mb": 200}


def ray_executor(concurrency: int = 2) -> RayExecutor:
    return RayExecutor(RaySettings(None, concurrency, 1, 0, LOCAL, []))


@pytest.fixture(scope="module")
def ray_started():
    import ray
    import ray.cloudpickle

    # this module's compute functions travel by value: Ray's workers cannot import a test module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = ray_executor()
    executor.start()
    yield executor
    ray.shutdown()


def square_all(batch: list[int]) -> list[int]:
    return [x * x for x in batch]


def fail_on_13(batch: list[int]) -> list[int]:
    if 13 in batch:
        raise ValueError("13 is unlucky")
    return square_all(batch)


def squares(cache: RowCache, items: list[int], compute=square_all, batch_size: int = 4):
    encode, decode = json_codec()
    return cache.map(
        items,
        key_fn=lambda x: cache_key(kind="square", x=x),
        compute=compute,
        encode=encode,
        decode=decode,
        batch_size=batch_size,
    )


def stored(cache_dir: Path) -> int:
    with sqlite3.connect(cache_dir / "rows.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]


def test_ray_computes_the_misses_in_input_order_and_the_driver_commits_them(ray_started, tmp_path):
    cache = RowCache("t", tmp_path, executor=ray_started)
    squares(cache, [3, 5])  # two hits for the next map
    items = [9, 3, 7, 9, 5, *range(20, 40)]  # a duplicate: computed once
    assert squares(cache, items) == [x * x for x in items]
    assert stored(tmp_path) == 24
    # every miss went to Ray once (9 twice in the items, once to Ray); no hit did
    assert cache.stats() == {"cache_hits": 2, "cache_misses": 25, "ray_rows": 24, "ray_started": 1}


def test_a_warm_cache_asks_ray_for_nothing(tmp_path):
    squares(RowCache("t", tmp_path, executor=LocalExecutor()), list(range(10)))
    fresh = ray_executor()  # never started
    cache = RowCache("t", tmp_path, executor=fresh)
    assert squares(cache, list(range(10))) == [x * x for x in range(10)]
    assert cache.stats() == {"cache_hits": 10, "cache_misses": 0, "ray_rows": 0, "ray_started": 0}


def test_a_failed_map_keeps_every_committed_batch_and_the_rerun_computes_the_rest(
    ray_started, tmp_path
):
    one = ray_executor(concurrency=1)  # one actor: batches finish in order
    cache = RowCache("t", tmp_path, executor=one)
    with pytest.raises(Exception, match="13 is unlucky"):
        squares(cache, list(range(40)), compute=fail_on_13)
    kept = stored(tmp_path)
    # whole batches that came back before 13's failed are committed (how many depends on
    # how far Ray had got when the failure stopped the map)
    assert 0 < kept < 40 and kept % 4 == 0
    rerun = RowCache("t", tmp_path, executor=one)
    assert squares(rerun, list(range(40))) == [x * x for x in range(40)]
    assert rerun.stats()["cache_misses"] == 40 - kept


def test_model_features_are_byte_identical_to_local(ray_started, tmp_path):
    samples = export(tmp_path / "photos", min_images=1)[:6]  # scikit-image's photos
    paths = [str(tmp_path / "photos" / s.file) for s in samples]
    images = pl.DataFrame({"image_id": [sha256_file(p) for p in paths], "path": paths})
    texts = [f"how long can I stay in here with the engine running? ({i})" for i in range(40)]

    def features(executor, folder):
        cache = RowCache("t", folder, executor=executor)
        scores, pooled = nsfw_cached(images, NsfwModel(), cache, 4)
        ocr = ocr_cached(images, OcrReader(0.6), cache)
        text = encode_cached(TextEncoder(), texts, cache, 16)
        return scores.tobytes(), pooled.tobytes(), json.dumps(ocr), text.tobytes()

    assert features(ray_started, tmp_path / "ray") == features(LocalExecutor(), tmp_path / "local")


def test_a_model_wrapper_ships_without_its_loaded_model():
    encoder = TextEncoder()
    encoder.encode(["load the model"])
    # deepcopy goes through __getstate__ / __setstate__, as Ray's (cloud)pickle does
    assert set(encoder.__getstate__()) == {"model_id"}
    copy = deepcopy(encoder)
    assert copy._model is None
    np.testing.assert_array_equal(copy.encode(["a sauna"]), encoder.encode(["a sauna"]))


def test_openai_requests_go_through_ray_data_llm_http_processor(ray_started, tmp_path):
    """The HTTP processor against a real loopback server: the same replies, keys and failures as
    the backend asking itself; a request that cannot be sent fails on the driver, uncached."""
    with chat_server("echo") as url, chat_server("echo") as second:
        params = conf_option(
            "generator", "openai", model="m", base_url=url, api_key_env=None, backoff_s=0.01,
            images=False,
        )  # fmt: skip
        backend = OpenAIBackend.from_params(params)
        settings = RaySettings(None, 2, 1, 0, LOCAL, [second])
        requests = [
            ChatRequest(messages=({"role": "user", "content": f"q{i}"},), sampling=sampling())
            for i in range(12)
        ]
        broken = ChatRequest(
            messages=({"role": "user", "content": "look"},),
            images=(str(tmp_path / "photo.png"),),
            sampling=sampling(),
        )
        ray_cache = RowCache("t", tmp_path / "ray", executor=RayExecutor(settings))
        (tmp_path / "photo.png").write_bytes(b"")  # keyable; a text-only model refuses it
        replies = cached_complete(backend, ray_cache, [*requests, broken], 5, "ask")
        local = cached_complete(
            backend, RowCache("t", tmp_path / "local", executor=LocalExecutor()), requests, 5, "x"
        )

    def sent(reply):  # what the server saw, less its own counters
        echoed = json.loads(reply.text)
        return {k: v for k, v in echoed.items() if k not in ("attempt", "max_in_flight")}

    assert [sent(r) for r in replies[:12]] == [sent(r) for r in local]
    assert [sent(r)["echo"] for r in replies[:12]] == [f"q{i}" for i in range(12)]
    assert not replies[12].ok and "takes no images" in replies[12].error
    assert stored(tmp_path / "ray") == 12  # the failed one is asked again next time
    warm = RowCache("t", tmp_path / "ray", executor=ray_executor())
    cached_complete(backend, warm, requests, 5, "again")
    assert warm.stats()["cache_misses"] == 0


@pytest.mark.slow
def test_the_http_processor_against_transformers_serve(ray_started, smollm2_folder, tmp_path):
    """ray.data.llm's HTTP processor against a real model server (SmolLM2, greedy): the replies
    the backend gets by itself, under the same row-cache keys."""
    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn")):
        pytest.skip("`transformers serve` needs the extra transformers[serving]")
    short = sampling(max_tokens=12)
    asks = [
        ChatRequest(messages=({"role": "user", "content": text},), sampling=short)
        for text in ("Say hello.", "Name a colour.", "Is fire hot?", "Count to three.")
    ]
    with transformers_serve(smollm2_folder) as url:
        params = {"model": str(smollm2_folder), "base_url": url, "api_key_env": None}
        backend = OpenAIBackend.from_params(conf_option("generator", "openai", **params))
        local_cache = RowCache("t", tmp_path, executor=LocalExecutor())
        local = cached_complete(backend, local_cache, asks, 2, "local")
        ray_cache = RowCache("t", tmp_path / "ray", executor=RayExecutor(ray_started.settings))
        remote = cached_complete(backend, ray_cache, asks, 2, "ray")
    assert all(r.ok for r in local + remote), [r.error for r in local + remote]
    assert [r.text for r in remote] == [r.text for r in local]
    with (
        sqlite3.connect(tmp_path / "rows.sqlite") as a,
        sqlite3.connect(tmp_path / "ray" / "rows.sqlite") as b,
    ):
        query = "SELECT key, value FROM rows ORDER BY key"
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_executor_ray_without_ray_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    cache = RowCache("t", tmp_path, executor=ray_executor())
    with pytest.raises(ImportError, match=r"pip install 'safeforge\[ray\]'"):
        squares(cache, [1, 2])
    with pytest.raises(ImportError) as raised:
        ray_executor().start()
    assert str(raised.value) == INSTALL


def test_executor_params_are_checked():
    ray_section = conf_option("executor", "ray")
    assert isinstance(make_executor(ray_section), RayExecutor)
    assert isinstance(make_executor(conf_option("executor", "local")), LocalExecutor)
    with pytest.raises(KeyError, match="unknown keys"):
        make_executor({**ray_section, "workers": 4})
    with pytest.raises(ValueError, match="choose one of"):
        make_executor({"kind": "dask"})


def test_ray_address_attaches_to_a_running_cluster(tmp_path):
    """RAY_ADDRESS (no code change) attaches to a cluster started elsewhere: here `ray start
    --head` with one CPU on its own port, which the map then runs on."""
    port = free_port()
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
         f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out = tmp_path / "out.json"
    script = f"""
import json, ray
from helpers import conf_option
from safeforge.cache import RowCache, cache_key, json_codec
from safeforge.executors import make_executor
executor = make_executor(conf_option("executor", "ray", concurrency=1))
encode, decode = json_codec()
cache = RowCache("t", {str(tmp_path)!r}, executor=executor)
got = cache.map([1, 2, 3], lambda x: cache_key(x=x), lambda b: [x + 1 for x in b], encode, decode)
open({str(out)!r}, "w").write(json.dumps([got, ray.cluster_resources()["CPU"]]))
"""
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT / "tests")}
    try:
        for _ in range(3):  # the head takes a few seconds to listen
            run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                 text=True, timeout=300)  # fmt: skip
            if run.returncode == 0:
                break
            time.sleep(5)
        assert run.returncode == 0, run.stderr[-3000:]
        assert json.loads(out.read_text()) == [[2, 3, 4], 1.0]
    finally:
        head.terminate()
        head.wait(timeout=60)
