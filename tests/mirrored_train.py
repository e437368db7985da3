"""Run ``glaviz.training.train`` on N logical CPU devices and dump its losses and weights.

Used by ``tests/test_train_mirrored.py`` in a subprocess, because logical devices can only be
configured before TensorFlow initialises its runtime, once per process.

    python tests/mirrored_train.py REPLICAS CONFIG.toml OUT.npz
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(replicas: int, config_path: str, out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
    )
    # Op-level determinism: the same reduction order in every run of this process kind.
    tf.config.experimental.enable_op_determinism()

    import importlib

    from glaviz.config.loading import load_train_config
    from glaviz.model.bundle import load_bundle
    from glaviz.training import train

    strategy = importlib.import_module("glaviz.training.train")._strategy(tf)
    result = train(load_train_config(config_path))
    weights = load_bundle(result.bundle).train_model.get_weights()
    np.savez(
        out,
        replicas=strategy.num_replicas_in_sync,
        history=json.dumps(result.history),
        **{f"w{i}": w for i, w in enumerate(weights)},
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
