"""The model cache of processes that deploy scene after scene (glaviz batch workers)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio

from glaviz.config import DeployConfig
from glaviz.engine import loading
from glaviz.engine.deploy import deploy
from glaviz.engine.loading import ModelCache
from tests.helpers import tiny_bundle, write_stack


def test_same_weights_load_once_and_a_replaced_file_loads_again(tmp_path: Path, monkeypatch):
    bundle = tiny_bundle(tmp_path / "m.glaviz")
    calls: list[str] = []
    real = loading.load_for_inference

    def counting(weights, **kw):
        calls.append(str(weights))
        return real(weights, **kw)

    monkeypatch.setattr(loading, "load_for_inference", counting)
    cache = ModelCache(max_models=1)
    first = cache.load(str(bundle), precision="float32")
    assert cache.load(str(bundle), precision="float32") is first
    assert len(calls) == 1 and cache.hits == 1
    # Another precision is another model; with room for one, the first is dropped.
    cache.load(str(bundle), precision="bfloat16")
    cache.load(str(bundle), precision="float32")
    assert len(calls) == 3
    # A replaced weights file (new modification time) is read again.
    stat = bundle.stat()
    os.utime(bundle, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.load(str(bundle), precision="float32") is not first
    assert len(calls) == 4


def test_deploy_with_a_cached_model_gives_the_same_outlines(tmp_path: Path) -> None:
    bundle = tiny_bundle(tmp_path / "m.glaviz")
    stack = write_stack(tmp_path / "stack.tif")
    cache = ModelCache()
    outs = []
    for name in ("a", "b", "c"):
        models = cache if name != "a" else None
        config = DeployConfig(
            stack=stack, weights=str(bundle), output=tmp_path / name, vector=False, quicklook=False
        )
        deploy(config, models=models)
        with rasterio.open(tmp_path / name / "outlines.tif") as ds:
            outs.append(ds.read(1))
    assert cache.hits == 1  # "c" reused the model "b" loaded, and its compiled runner
    assert len(cache._runners) == 1
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
