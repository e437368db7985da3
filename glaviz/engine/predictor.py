"""Fixed-shape batched inference through one compiled TensorFlow function.

Every call sees the same batch shape (short batches are zero-padded), so the function is traced
once and reused for the whole scene. Test-time augmentation runs the eight flips and rotations of
each window inside the same call, as one larger batch, and undoes them before averaging; MC
dropout repeats the stochastic forward pass ``mc`` times and averages the probabilities.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from glaviz.errors import ConfigError

log = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16", "float16", "mixed_float16", "mixed_bfloat16"]
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "float16")

_POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "mixed_bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
    "mixed_float16": "mixed_float16",
}


def gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def default_batch_size(*, tta: bool = False) -> int:
    """Windows per model call when the user does not say.

    On CPUs a batch buys little (about 3 % more windows/s from 1 to 4 at the published size, two
    cores) but every extra window costs about 0.45 GB of activations, so deploy keeps one window per
    call and memory flat. GPUs need batches to be busy. With TTA every window is already eight
    images.
    """
    if tta:
        return 1
    return 8 if gpu_available() else 1


def dtype_policy(precision: str) -> str:
    """Keras dtype policy for a ``--precision`` value, checked against the hardware.

    float16 is only offered on GPUs: CPUs have no fast float16 arithmetic and TensorFlow emulates
    it slowly. bfloat16 runs on any CPU but is only fast where the CPU has native bfloat16
    instructions (AVX512-BF16 or AMX) or on a GPU.
    """
    if precision not in _POLICIES:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    policy = _POLICIES[precision]
    if policy == "mixed_float16" and not gpu_available():
        raise ConfigError(
            "--precision float16 needs a GPU (none is visible); use bfloat16 on CPUs that "
            "support it, or float32"
        )
    return policy


@contextlib.contextmanager
def policy_scope(policy: str) -> Iterator[None]:
    """Build models under a Keras dtype policy without leaking it to the rest of the process."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _dihedral(x: Any, k: int, flip: bool) -> Any:
    import tensorflow as tf

    if flip:
        x = tf.reverse(x, axis=[2])
    return tf.image.rot90(x, k) if k else x


def _undo_dihedral(x: Any, k: int, flip: bool) -> Any:
    import tensorflow as tf

    if k:
        x = tf.image.rot90(x, 4 - k)
    return tf.reverse(x, axis=[2]) if flip else x


#: The eight symmetries of the square: rotations by k·90° with and without a horizontal flip.
TTA_TRANSFORMS: tuple[tuple[int, bool], ...] = tuple(
    (k, flip) for flip in (False, True) for k in range(4)
)


class Predictor:
    """Runs an inference model on fixed-size batches of windows.

    ``inputs`` maps input names (feature groups and optionally ``location``) to arrays of shape
    (n, P, P, C) or (n, L); ``predict`` returns float32 probabilities of shape (n, P, P, classes).
    """

    def __init__(
        self,
        model: Any,
        *,
        input_shapes: dict[str, tuple[int, ...]],
        batch_size: int = 4,
        tta: bool = False,
        mc: int = 0,
    ) -> None:
        import tensorflow as tf

        if batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
        if mc < 0:
            raise ConfigError(f"--mc must be 0 (off) or a number of passes, got {mc}")
        self.model = model
        self.batch_size = batch_size
        self.tta = tta
        self.passes = max(1, mc)
        self.input_shapes = dict(input_shapes)
        signature = {
            name: tf.TensorSpec((batch_size, *shape), tf.float32, name=name)
            for name, shape in self.input_shapes.items()
        }
        self._forward = tf.function(self._forward_impl, input_signature=[signature])

    def _forward_impl(self, batch: dict[str, Any]) -> Any:
        import tensorflow as tf

        total = None
        for _ in range(self.passes):
            probs = self._augmented(batch) if self.tta else self.model(batch, training=False)
            probs = tf.cast(probs, tf.float32)
            total = probs if total is None else total + probs
        return total / float(self.passes) if self.passes > 1 else total

    def _augmented(self, batch: dict[str, Any]) -> Any:
        import tensorflow as tf

        n = len(TTA_TRANSFORMS)
        stacked = {}
        for name, x in batch.items():
            if x.shape.rank == 4:
                stacked[name] = tf.concat([_dihedral(x, k, f) for k, f in TTA_TRANSFORMS], axis=0)
            else:
                stacked[name] = tf.tile(x, [n, 1])
        probs = tf.cast(self.model(stacked, training=False), tf.float32)
        parts = tf.split(probs, n, axis=0)
        restored = [
            _undo_dihedral(p, k, f) for p, (k, f) in zip(parts, TTA_TRANSFORMS, strict=True)
        ]
        return tf.add_n(restored) / float(n)

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities for every window in ``inputs``, in order, as float32."""
        n = len(next(iter(inputs.values())))
        out: list[np.ndarray] = []
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            batch = {}
            for name, shape in self.input_shapes.items():
                chunk = np.asarray(inputs[name][start:stop], dtype=np.float32)
                if stop - start < self.batch_size:
                    fill = np.zeros((self.batch_size - (stop - start), *shape), np.float32)
                    chunk = np.concatenate([chunk, fill])
                batch[name] = chunk
            out.append(np.asarray(self._forward(batch))[: stop - start])
        return np.concatenate(out) if len(out) > 1 else out[0]
