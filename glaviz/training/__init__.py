"""Training GlaViTU on the benchmark HDF5 layout: input pipeline, recipe, loop, run records.

The configuration is :class:`glaviz.config.TrainConfig`, read like every other command's by
:mod:`glaviz.config.loading`::

    from glaviz.config.loading import load_train_config
    from glaviz.training import train
    result = train(load_train_config("configs/demo.toml", ["training.epochs=3"]), progress=True)
    result.bundle  # <output>/model.glaviz

Nothing here imports TensorFlow at import time; :func:`train` does when it starts.
"""

from __future__ import annotations

from glaviz.training.train import TrainResult, model_config, read_state, train

__all__ = ["TrainResult", "model_config", "read_state", "train"]
