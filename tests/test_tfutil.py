"""TensorFlow's start-up: without Keras' optional extras, one op at a time on CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import tiny_bundle

_START = """
import json, sys
from glaviz.util.tf import import_tensorflow
tf = import_tensorflow()
hidden = [name for name in ("sklearn", "matplotlib") if name not in sys.modules]
from sklearn.isotonic import IsotonicRegression  # still importable afterwards
from matplotlib.figure import Figure
print(json.dumps({"hidden": hidden, "keras": tf.keras.__name__}))
"""


def test_tensorflow_starts_without_keras_optional_extras() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _START], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["hidden"] == ["sklearn", "matplotlib"]
    assert result["keras"].startswith("keras")


_THREADS = """
import json, sys
from glaviz.engine.loading import load_for_inference
import tensorflow as tf
load_for_inference(sys.argv[1])
print(json.dumps(tf.config.threading.get_inter_op_parallelism_threads()))
"""


@pytest.mark.parametrize(("env", "expected"), [({}, 1), ({"TF_NUM_INTEROP_THREADS": "2"}, 0)])
def test_inference_runs_one_op_at_a_time_on_cpus(tmp_path, env, expected) -> None:
    """On a CPU each op gets every core, unless the user sized TensorFlow's pool (0: not set by
    glaviz, TensorFlow reads the variable itself)."""
    bundle = tiny_bundle(tmp_path / "tiny.glaviz")
    environment = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTEROP_THREADS"}
    environment.update({"CUDA_VISIBLE_DEVICES": "", **env})
    done = subprocess.run(
        [sys.executable, "-c", _THREADS, str(bundle)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected
