"""Training GlaViTU on the benchmark HDF5 layout: config, input pipeline, recipe, loop.

Public API::

    from glaviz.training import load_config, train
    result = train(load_config("configs/demo.toml", ["training.epochs=3"]), progress=True)
    result.bundle  # <output>/model.glaviz

Nothing here imports TensorFlow at import time; :func:`train` does when it starts.
"""

from __future__ import annotations

from glaviz.training.config import TrainConfig, apply_overrides, load_config, validate_config
from glaviz.training.train import TrainResult, model_config, read_state, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "apply_overrides",
    "load_config",
    "model_config",
    "read_state",
    "train",
    "validate_config",
]
