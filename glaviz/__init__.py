"""glaviz: glacier mapping with GlaViTU (Maslov et al., Nature Communications 2025).

In a notebook, every command is a function taking the command's configuration model::

    import glaviz
    result = glaviz.deploy(glaviz.DeployConfig(stack="scene.tif", weights="global"))
    ds = glaviz.open_result(result.outdir)   # xarray.Dataset with CRS, run record in attrs

The top-level package stays import-light on purpose: ``glaviz --help`` must not pull in TensorFlow,
rasterio or h5py. The names below are imported on first use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("glaviz")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

#: Public name → module that defines it (imported lazily by ``__getattr__``).
_LAZY = {
    "deploy": "glaviz.api",
    "predict": "glaviz.api",
    "evaluate": "glaviz.api",
    "calibrate": "glaviz.api",
    "optimise_bias": "glaviz.api",
    "compile_features": "glaviz.api",
    "inventory": "glaviz.api",
    "change": "glaviz.api",
    "acquire": "glaviz.api",
    "open_result": "glaviz.result",
    "load_config": "glaviz.config.loading",
    "prepare_outputs": "glaviz.runs.records",
    "Skipped": "glaviz.runs.records",
    "AcquireConfig": "glaviz.config",
    "CalibrateConfig": "glaviz.config",
    "ChangeConfig": "glaviz.config",
    "DeployConfig": "glaviz.config",
    "EvaluateConfig": "glaviz.config",
    "FeaturesConfig": "glaviz.config",
    "FetchWeightsConfig": "glaviz.config",
    "FetchDatasetConfig": "glaviz.config",
    "InventoryConfig": "glaviz.config",
    "OptimiseBiasConfig": "glaviz.config",
    "PredictConfig": "glaviz.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'glaviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
