"""Batch normalisation folded into the preceding convolution, for inference.

At inference a batch-norm layer is a fixed per-channel affine map, ``y·s + t`` with
``s = γ/√(σ²+ε)`` and ``t = β − μ·s``. Applied after a convolution it can be moved into the
convolution's own weights: kernel·s and (bias − μ)·s + β. The folded convolution then runs as one
fused kernel (convolution, bias and LeakyReLU in a single pass over memory) instead of a
convolution followed by four element-wise passes, and under mixed precision without the casts
to and from float32 that batch norm needs. On the published model that is 5 % of a float32
window and 15 % of a bfloat16 one on a 2-core CPU (``docs/deploy-internals.md``).

Folding rewrites the convolution's variables in place, so the folded model needs no second copy
of its weights (peak memory stays where it was). The price is that a folded model is an
inference model for good: its layers refuse ``training=True``, and it must not be saved.
:func:`glaviz.engine.loading.load_for_inference` folds the models it loads, which only predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops


class FoldedModelError(RuntimeError):
    """A folded (inference-only) layer was asked to train."""


@dataclass(frozen=True)
class FoldedConv:
    """A convolution with its batch norm folded in: ``conv(x, kernel) + bias``, then optionally
    LeakyReLU. ``kernel`` is the convolution's own (rewritten) variable, cast to the input's
    dtype on use as Keras does under mixed precision."""

    kernel: Any
    bias: Any

    def __call__(self, x: Any, slope: float | None = None) -> Any:
        kernel, bias = ops.cast(self.kernel, x.dtype), ops.cast(self.bias, x.dtype)
        y = ops.add(ops.conv(x, kernel, padding="same"), bias)
        return y if slope is None else ops.leaky_relu(y, slope)


@dataclass(frozen=True)
class FoldedUpConv:
    """Nearest ×2 upsampling, a 2×2 "same" convolution and its batch norm, computed on the
    low-resolution grid.

    After nearest upsampling, output pixel (2a+r, 2b+s) sees input pixels a (and a+1 if r = 1)
    down the rows and b (and b+1 if s = 1) across, because "same" padding of an even kernel pads
    after, not before. So each of the four output phases (r, s) is a small convolution of the
    input itself, with the 2×2 kernel's taps summed where they land on the same input pixel:
    1×1 for (0, 0), 1×2 for (0, 1), 2×1 for (1, 0) and the 2×2 kernel for (1, 1). That is 9 of
    the 16 multiply-adds per input pixel of convolving the upsampled map, with the same result
    up to rounding; the phases are then interleaved into the ×2 grid.
    """

    kernels: tuple[Any, ...]  # phases (0, 0), (0, 1), (1, 0), (1, 1), in the compute dtype
    bias: Any

    def __call__(self, x: Any) -> Any:
        padded = ops.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])
        sources = (x, padded[:, :-1], padded[:, :, :-1], padded)
        y00, y01, y10, y11 = (
            ops.add(ops.conv(source, kernel, padding="valid"), self.bias)
            for source, kernel in zip(sources, self.kernels, strict=True)
        )
        h, w = ops.shape(x)[1:3]
        rows = ops.stack([ops.stack([y00, y01], axis=3), ops.stack([y10, y11], axis=3)], axis=2)
        return ops.reshape(rows, (-1, 2 * h, 2 * w, ops.shape(y00)[-1]))  # (n, h, r, w, s, c)


def fold(conv: Any, bn: Any) -> FoldedConv:
    """Fold batch norm ``bn`` into the "same"-padded, stride-1 ``conv`` that feeds it.

    The folded kernel is written into ``conv.kernel`` (and the folded bias into ``conv.bias``
    where it has one); computed in float64 from the float32 variables.
    """
    kernel, bias = _folded_arrays(conv, bn)
    conv.kernel.assign(kernel.astype(np.float32))
    if conv.use_bias:
        conv.bias.assign(bias.astype(np.float32))
        return FoldedConv(kernel=conv.kernel, bias=conv.bias)
    return FoldedConv(kernel=conv.kernel, bias=ops.convert_to_tensor(bias, dtype="float32"))


def fold_upconv(conv: Any, bn: Any) -> FoldedUpConv:
    """:class:`FoldedUpConv` for a 2×2 ``conv`` (after nearest ×2 upsampling) and its ``bn``.

    The phase kernels are new tensors in the compute dtype, together 9/4 the size of the 2×2
    kernel; only the U-Net's three up-convolutions use them.
    """
    k, bias = _folded_arrays(conv, bn)
    if k.shape[:2] != (2, 2):
        raise ValueError(f"expected a 2×2 kernel after ×2 upsampling, got {k.shape[:2]}")
    phases = (
        (k[0, 0] + k[0, 1] + k[1, 0] + k[1, 1])[None, None],
        np.stack([k[0, 0] + k[1, 0], k[0, 1] + k[1, 1]])[None],
        np.stack([k[0, 0] + k[0, 1], k[1, 0] + k[1, 1]])[:, None],
        k,
    )
    dtype = conv.compute_dtype
    return FoldedUpConv(
        kernels=tuple(ops.convert_to_tensor(phase, dtype=dtype) for phase in phases),
        bias=ops.convert_to_tensor(bias, dtype=dtype),
    )


def _folded_arrays(conv: Any, bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """The folded kernel and bias of ``conv`` → ``bn``, in float64."""
    kernel = np.asarray(ops.convert_to_numpy(conv.kernel), dtype=np.float64)
    filters = kernel.shape[-1]
    mean = _value(bn.moving_mean, 0.0, filters)
    variance = _value(bn.moving_variance, 1.0, filters)
    gamma = _value(bn.gamma if bn.scale else None, 1.0, filters)
    beta = _value(bn.beta if bn.center else None, 0.0, filters)
    bias = _value(conv.bias if conv.use_bias else None, 0.0, filters)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return kernel * scale, (bias - mean) * scale + beta


def _value(variable: Any, default: float, size: int) -> np.ndarray:
    if variable is None:
        return np.full(size, default, dtype=np.float64)
    return np.asarray(ops.convert_to_numpy(variable), dtype=np.float64)


def check_inference(layer: Any, training: bool | None) -> None:
    """Raise :class:`FoldedModelError` if a folded ``layer`` is called to train."""
    if training:
        raise FoldedModelError(
            f"layer {layer.name!r} has its batch norm folded for inference and cannot train; "
            "build the model again from its weights to train it"
        )


def fold_batch_norm(model: Any) -> int:
    """Fold every convolution → batch-norm pair of a GlaViTU model, in place, for inference.

    Each layer that has such pairs defines ``fold_batch_norm()``, which folds once (a second
    call folds nothing); this calls it on every layer of ``model``, nested ones included, and
    returns how many pairs were folded.
    """
    folded = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        method = getattr(layer, "fold_batch_norm", None)
        if method is not None:
            folded += method()
    return folded
