"""The MirroredStrategy path of ``glaviz train``, on two logical CPU devices.

Each run is a subprocess (``tests/mirrored_train.py``): logical devices can be configured only
before TensorFlow's runtime starts, and once per process, so they must not touch this process.

Tolerances. Both runs draw the same patches (same seed) in the same global batches of 4; the
two-replica run splits each into 2 + 2, synchronised batch normalisation computes the statistics
of all 4, and the gradients of the halves are summed — mathematically the same step. What
differs is the order of floating-point reductions (two partial sums instead of one), a relative
error of order 1e-7 per operation that training amplifies a little step by step. So:

* per-epoch training losses agree to 1e-3 relative (measured: ~5e-6 after one epoch, ~3e-4
  after two);
* validation losses are computed from the trained weights, whose rounding differences Adam has
  amplified (next point), so they agree to 1e-2 relative (measured: 3e-3);
* Adam divides each gradient by its running RMS, so a weight whose gradient is ~0 moves by up to
  ~lr per step in a direction set by rounding noise: any weight can differ by at most
  2 · lr · steps, and that bound is checked for all of them; the bulk of the weights (99 %)
  must agree to 1e-4, two orders of magnitude below the training's own weight changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glaviz.samples import make_benchmark_splits

ROOT = Path(__file__).resolve().parents[1]
LR = 5e-4
EPOCHS, STEPS = 2, 3


def config(tmp_path: Path, splits: dict[str, Path], name: str, extra: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""
output = "{tmp_path / name}"
[data]
train = "{splits["train"]}"
val = "{splits["val"]}"
[model]
preset = "tiny"
patch_size = 32
[training]
epochs = {EPOCHS}
batch_size = 4
steps_per_epoch = {STEPS}
validation_steps = 2
learning_rate = {LR}
seed = 1
{extra}
[augment]
flips = false
rotations = false
crop_and_scale = false
"""
    )
    return path


def train_on(replicas: int, cfg: Path, out: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "mirrored_train.py"),
            str(replicas),
            str(cfg),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = np.load(out)
    weights = [
        data[k]
        for k in sorted((k for k in data.files if k.startswith("w")), key=lambda k: int(k[1:]))
    ]
    return {
        "replicas": int(data["replicas"]),
        "history": json.loads(str(data["history"])),
        "weights": weights,
    }


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_benchmark_splits(
        tmp_path_factory.mktemp("bench"), tiles=(2, 1, 1), tile_size=64, patch_size=32,
        regions=("ALP",), seed=2,
    )  # fmt: skip


@pytest.mark.slow
def test_two_replicas_follow_one_device_at_the_same_global_batch(
    tmp_path: Path, splits: dict[str, Path]
) -> None:
    one = train_on(1, config(tmp_path, splits, "one"), tmp_path / "one.npz")
    two = train_on(2, config(tmp_path, splits, "two"), tmp_path / "two.npz")
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert len(one["history"]) == len(two["history"]) == EPOCHS
    for a, b in zip(one["history"], two["history"], strict=True):
        for key in ("loss", "output_loss", "deepsupervision_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-3), (a["epoch"], key)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-2), a["epoch"]
    diffs = np.concatenate(
        [np.abs(a - b).ravel() for a, b in zip(one["weights"], two["weights"], strict=True)]
    )
    assert diffs.max() <= 2 * LR * EPOCHS * STEPS
    assert np.quantile(diffs, 0.99) <= 1e-4


def test_xla_is_off_only_for_mixed_precision_on_several_replicas() -> None:
    from glaviz.training.train import jit_compile_setting

    assert jit_compile_setting(replicas=2, mixed_precision=True) is False
    assert jit_compile_setting(replicas=1, mixed_precision=True) == "auto"
    assert jit_compile_setting(replicas=4, mixed_precision=False) == "auto"


@pytest.mark.slow
def test_mixed_precision_trains_on_two_replicas(tmp_path: Path, splits: dict[str, Path]) -> None:
    """keras-team/keras#21366: mixed_float16 + MirroredStrategy must not go through XLA."""
    cfg = config(tmp_path, splits, "mixed", extra="mixed_precision = true")
    run = train_on(2, cfg, tmp_path / "mixed.npz")
    assert run["replicas"] == 2
    assert all(np.isfinite(r["loss"]) for r in run["history"])
