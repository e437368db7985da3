"""The published training recipe in Keras 3: focal loss, glacier IoU, cosine warm restarts.

Importing this module imports Keras (and TensorFlow); :mod:`glaviz.training.train` imports it
only when training starts, so ``glaviz --help`` stays instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="glaviz")
class FocalLoss(keras.losses.Loss):
    """Focal loss of the published code (``losses/losses.py``).

    ``mean over pixels of sum over classes of -(1 - p)^gamma * y * log(p)``, with ``p`` clipped
    to ``[eps, 1 - eps]``. Unlike Keras' ``CategoricalFocalCrossentropy`` there is no alpha
    weighting, which is why it is written out here.
    """

    def __init__(self, gamma: float = 2.0, name: str = "focal_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.gamma = gamma

    def call(self, y_true: Any, y_pred: Any) -> Any:
        eps = keras.config.epsilon()
        y_pred = ops.clip(ops.cast(y_pred, "float32"), eps, 1.0 - eps)
        y_true = ops.cast(y_true, "float32")
        loss = -ops.power(1.0 - y_pred, self.gamma) * y_true * ops.log(y_pred)
        return ops.sum(loss, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="glaviz")
class GlacierIoU(keras.metrics.Metric):
    """Intersection over union of the glacier class (argmax), pixels summed over the epoch.

    The published metric averaged a per-patch IoU (empty patches counting as 1); summing pixels
    first is what ``glaviz evaluate`` reports, so the number chosen for the best checkpoint is
    the number users will see.
    """

    def __init__(self, class_id: int = 1, name: str = "iou", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.class_id = class_id
        self.tp = self.add_variable((), initializer="zeros", name="tp")
        self.fp = self.add_variable((), initializer="zeros", name="fp")
        self.fn = self.add_variable((), initializer="zeros", name="fn")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        truth = ops.cast(ops.argmax(y_true, axis=-1) == self.class_id, "float32")
        pred = ops.cast(ops.argmax(y_pred, axis=-1) == self.class_id, "float32")
        self.tp.assign_add(ops.sum(truth * pred))
        self.fp.assign_add(ops.sum((1.0 - truth) * pred))
        self.fn.assign_add(ops.sum(truth * (1.0 - pred)))

    def result(self) -> Any:
        union = self.tp + self.fp + self.fn
        return ops.where(union > 0, self.tp / ops.maximum(union, 1.0), 1.0)

    def reset_state(self) -> None:
        for v in (self.tp, self.fp, self.fn):
            v.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_id": self.class_id}


@keras.saving.register_keras_serializable(package="glaviz")
class CosineRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from ``start`` with warm restarts at the given optimizer steps.

    The published callback (``utils/deeplearning``): within stage ``[b_k, b_{k+1})`` the rate is
    ``start / 2 * (1 + cos(pi * (step - b_k) / (b_{k+1} - b_k)))``; after the last boundary it
    stays at ``start``. Being a schedule of the optimizer's step counter, it resumes exactly
    when the optimizer state is restored.
    """

    def __init__(self, start: float, boundaries: Sequence[int]) -> None:
        self.start = float(start)
        self.boundaries = [int(b) for b in boundaries]

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        ends = ops.convert_to_tensor(self.boundaries, dtype="float32")
        starts = ops.convert_to_tensor([0, *self.boundaries[:-1]], dtype="float32")
        stage = ops.sum(ops.cast(step >= ends, "int32"))
        last = len(self.boundaries) - 1
        index = ops.minimum(stage, last)
        lo, hi = ops.take(starts, index), ops.take(ends, index)
        phase = ops.clip((step - lo) / ops.maximum(hi - lo, 1.0), 0.0, 1.0)
        decayed = 0.5 * self.start * (1.0 + ops.cos(math.pi * phase))
        return ops.where(stage > last, self.start, decayed)

    def get_config(self) -> dict[str, Any]:
        return {"start": self.start, "boundaries": self.boundaries}
