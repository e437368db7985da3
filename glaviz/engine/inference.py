"""The model as the window loop sees it: fixed-shape batches through one compiled function.

Every call sees the same batch shape (short batches are zero-padded), so the function is traced
once and reused for the whole scene. Test-time augmentation runs the eight flips and rotations of
each window inside the same call, as one larger batch, and undoes them before averaging; MC
dropout repeats the stochastic forward pass ``mc`` times and averages the probabilities.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from glaviz.errors import ConfigError

log = logging.getLogger(__name__)

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


#: Default activation-memory budget per model call on a CPU, in MiB: the published model
#: (patch 384, 64 filters) needs about 430 MiB of activations per window, so it keeps one window
#: per call and deploy's peak memory stays where it was measured (1.36 GB at 1500²); small models
#: (the built-in ``demo``: patch 64, 16 filters) get many windows per call.
CPU_BUDGET_MB = 512
#: Default budget on a GPU, in MiB: eight published windows per call keep a GPU busy and fit
#: any current accelerator.
GPU_BUDGET_MB = 4096
#: Upper bound on windows per call: beyond this a batch buys no speed and delays the first rows.
MAX_BATCH = 256
#: Activation values per pixel and per filter of the widest stage, measured on the published
#: model (0.45 GB per 384² window with 64 filters, float32; see docs/deploy-internals.md).
ACTIVATIONS_PER_PIXEL_FILTER = 12


def activation_bytes(config: Any, *, tta: bool = False) -> int:
    """Estimated activation memory of one window in one model call, in bytes.

    Counted in float32 whatever the precision (mixed-precision models keep float32 copies on
    CPUs). TTA runs the eight flips and rotations of a window in the same call.
    """
    filters = max(config.width, config.decoder_filters, config.unet_filters)
    per_window = config.patch_size**2 * ACTIVATIONS_PER_PIXEL_FILTER * filters * 4
    return per_window * (len(TTA_TRANSFORMS) if tta else 1)


def default_budget_mb() -> int:
    """The activation-memory budget when the user gives none: :data:`GPU_BUDGET_MB` on a GPU,
    :data:`CPU_BUDGET_MB` otherwise."""
    return GPU_BUDGET_MB if gpu_available() else CPU_BUDGET_MB


def batch_size_for_budget(config: Any, *, budget_mb: float | None = None, tta: bool = False) -> int:
    """Windows per model call that fit ``budget_mb`` of activations (at least 1, at most
    :data:`MAX_BATCH`); ``None`` uses :func:`default_budget_mb`."""
    budget = (default_budget_mb() if budget_mb is None else budget_mb) * 2**20
    return int(min(MAX_BATCH, max(1, budget // activation_bytes(config, tta=tta))))


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


class BatchedModel:
    """Runs an inference model on fixed-size batches of windows (one compiled graph).

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

    @classmethod
    def for_model(
        cls, model: Any, *, batch_size: int, tta: bool = False, mc: int = 0
    ) -> BatchedModel:
        """Wrap a loaded :class:`~glaviz.engine.loading.InferenceModel` (inputs from its config)."""
        config = model.config
        p = config.patch_size
        shapes: dict[str, tuple[int, ...]] = {
            g: (p, p, n) for g, n in config.feature_groups.items()
        }
        if config.uses_location:
            shapes["location"] = (config.location_size,)
        return cls(model.model, input_shapes=shapes, batch_size=batch_size, tta=tta, mc=mc)

    @classmethod
    def for_deploy(cls, model: Any, batch_size: int, config: Any) -> BatchedModel:
        """:meth:`for_model` with a deploy configuration's TTA and MC dropout settings."""
        return cls.for_model(model, batch_size=batch_size, tta=config.tta, mc=config.mc)

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
