"""GlaViTU's building blocks as serialisable Keras 3 layers.

Each layer mirrors one block of the published Keras 2 model (the quirks that matter are listed in
``docs/architecture.md``, "The model"). Sublayers are created in the same order as in the published
code: the order of ``layer.weights`` is what :mod:`glaviz.model.checkpoint` uses to map published
HDF5 tensors onto these layers, so reordering sublayer creation breaks checkpoint import (the tests
would notice).

Dropout follows the published quirk: every dropout is called with ``training=<MC flag>`` rather
than Keras' training flag, so it is off in training and inference unless MC dropout is switched on.
``train_dropout=True`` is glaviz's own, clearly separate option for real training-time dropout.

Batch normalisation is ``synchronized``: under MirroredStrategy on several GPUs the batch
statistics are those of the global batch (8 patches in the published recipe), as on one GPU, not
of each replica's share. It changes nothing on one device or at inference.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from glaviz.model.folding import FoldedConv, FoldedUpConv, check_inference, fold, fold_upconv

PACKAGE = "glaviz"

#: tf.nn.leaky_relu's default slope, used by every conv block, the U-Net and the excitation gate.
LRELU_CONV = 0.2
#: The Keras 2 ``LeakyReLU`` layer default, used only in the location MLP.
LRELU_LOCATION = 0.3


class _DropoutMixin:
    """Decides whether a dropout call is active, following the published semantics."""

    mc_dropout: bool
    train_dropout: bool

    def _dropout_active(self, training: bool | None) -> bool:
        if self.mc_dropout:
            return True
        return bool(training) if self.train_dropout else False


def _dropout_config(layer: Any) -> dict[str, Any]:
    return {
        "dropout": layer.dropout_rate,
        "mc_dropout": layer.mc_dropout,
        "train_dropout": layer.train_dropout,
    }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvBNx2(_DropoutMixin, layers.Layer):
    """Two 3×3 conv → batch-norm → LeakyReLU(0.2) stages, then spatial dropout."""

    def __init__(
        self,
        filters: int,
        dropout: float = 0.0,
        mc_dropout: bool = False,
        train_dropout: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.dropout_rate = dropout
        self.mc_dropout = mc_dropout
        self.train_dropout = train_dropout
        self.conv1 = layers.Conv2D(filters, 3, padding="same", name="conv1")
        self.bn1 = layers.BatchNormalization(synchronized=True, name="bn1")
        self.conv2 = layers.Conv2D(filters, 3, padding="same", name="conv2")
        self.bn2 = layers.BatchNormalization(synchronized=True, name="bn2")
        self.drop = layers.SpatialDropout2D(dropout, name="dropout") if dropout else None
        self._folded: tuple[FoldedConv, ...] = ()

    def build(self, input_shape: tuple) -> None:
        out = (*input_shape[:-1], self.filters)
        self.conv1.build(input_shape)
        self.bn1.build(out)
        self.conv2.build(out)
        self.bn2.build(out)
        if self.drop is not None:
            self.drop.build(out)

    def fold_batch_norm(self) -> int:
        """Fold both batch norms into their convolutions (see :mod:`glaviz.model.folding`)."""
        if self._folded:
            return 0
        self._folded = (fold(self.conv1, self.bn1), fold(self.conv2, self.bn2))
        return 2

    def call(self, x: Any, training: bool | None = None) -> Any:
        if self._folded:
            check_inference(self, training)
            y = self._folded[1](self._folded[0](x, LRELU_CONV), LRELU_CONV)
        else:
            y = ops.leaky_relu(self.bn1(self.conv1(x), training=training), LRELU_CONV)
            y = ops.leaky_relu(self.bn2(self.conv2(y), training=training), LRELU_CONV)
        if self.drop is not None:
            y = self.drop(y, training=self._dropout_active(training))
        return y

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, **_dropout_config(self)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Residual(_DropoutMixin, layers.Layer):
    """``ConvBNx2(n)(x) + Dense(n, no bias)(x)``: a residual block with a linear projection."""

    def __init__(
        self,
        filters: int,
        dropout: float = 0.0,
        mc_dropout: bool = False,
        train_dropout: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.dropout_rate = dropout
        self.mc_dropout = mc_dropout
        self.train_dropout = train_dropout
        self.block = ConvBNx2(filters, dropout, mc_dropout, train_dropout, name="block")
        self.projection = layers.Dense(filters, use_bias=False, name="projection")

    def build(self, input_shape: tuple) -> None:
        self.block.build(input_shape)
        self.projection.build(input_shape)

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.projection(x) + self.block(x, training=training)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, **_dropout_config(self)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class UpConv(layers.Layer):
    """Nearest ×2 upsampling → 2×2 conv without bias → batch norm (no activation)."""

    def __init__(self, filters: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.upsample = layers.UpSampling2D(2, name="upsample")
        self.conv = layers.Conv2D(filters, 2, padding="same", use_bias=False, name="conv")
        self.bn = layers.BatchNormalization(synchronized=True, name="bn")
        self._folded: FoldedConv | FoldedUpConv | None = None

    def build(self, input_shape: tuple) -> None:
        up = (input_shape[0], _times(input_shape[1], 2), _times(input_shape[2], 2), input_shape[3])
        self.conv.build(up)
        self.bn.build((*up[:-1], self.filters))

    def fold_batch_norm(self) -> int:
        """Fold the batch norm into the convolution (:mod:`glaviz.model.folding`).

        Under reduced precision the upsampling and convolution are also computed on the
        low-resolution grid (:class:`~glaviz.model.folding.FoldedUpConv`, 9/16 of the work).
        In float32 they are not: summing kernel taps first rounds differently, and on the
        published reference scene that moves a calibrated confidence near p = 0.5 past the
        reproduction tolerance; float32 is the precision that must reproduce published numbers.
        """
        if self._folded is not None:
            return 0
        if self.compute_dtype == "float32":
            self._folded = fold(self.conv, self.bn)
        else:
            self._folded = fold_upconv(self.conv, self.bn)
        return 1

    def call(self, x: Any, training: bool | None = None) -> Any:
        if self._folded is not None:
            check_inference(self, training)
            if isinstance(self._folded, FoldedUpConv):
                return self._folded(x)
            return self._folded(self.upsample(x))
        return self.bn(self.conv(self.upsample(x)), training=training)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        b, h, w, _ = input_shape
        return (b, _times(h, 2), _times(w, 2), self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters}


def _times(n: int | None, k: int) -> int | None:
    return None if n is None else n * k


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusionBlock(_DropoutMixin, layers.Layer):
    """Per-group ConvBNx2 branches, each gated by squeeze-excitation, summed into one map.

    ``s_g = sigmoid(Dense(lrelu(Dense(GAP(h_g)))))``; fused = ``Σ_g h_g · s_g``. Branch order is
    the input order, which is also the order of the published checkpoint's fusion kernels.
    """

    def __init__(
        self,
        filters: int,
        n_inputs: int,
        dropout: float = 0.0,
        mc_dropout: bool = False,
        train_dropout: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.n_inputs = n_inputs
        self.dropout_rate = dropout
        self.mc_dropout = mc_dropout
        self.train_dropout = train_dropout
        # Published creation order: all conv branches, then all first gate layers, then all
        # second gate layers (Keras 2 saved them grouped by attribute).
        self.branches = [
            ConvBNx2(filters, dropout, mc_dropout, train_dropout, name=f"branch{i}")
            for i in range(n_inputs)
        ]
        self.squeeze = [layers.Dense(filters, name=f"squeeze{i}") for i in range(n_inputs)]
        self.excite = [
            layers.Dense(filters, activation="sigmoid", name=f"excite{i}") for i in range(n_inputs)
        ]

    def build(self, input_shape: list[tuple]) -> None:
        pooled = (None, 1, 1, self.filters)
        for shape, branch, squeeze, excite in zip(
            input_shape, self.branches, self.squeeze, self.excite, strict=True
        ):
            branch.build(tuple(shape))
            squeeze.build(pooled)
            excite.build(pooled)

    def call(self, xs: list[Any], training: bool | None = None) -> Any:
        fused = None
        for x, branch, squeeze, excite in zip(
            xs, self.branches, self.squeeze, self.excite, strict=True
        ):
            h = branch(x, training=training)
            pooled = ops.mean(h, axis=(1, 2), keepdims=True)
            gate = excite(ops.leaky_relu(squeeze(pooled), LRELU_CONV))
            fused = h * gate if fused is None else fused + h * gate
        return fused

    def compute_output_shape(self, input_shape: list[tuple]) -> tuple:
        return (*tuple(input_shape[0])[:-1], self.filters)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "n_inputs": self.n_inputs,
            **_dropout_config(self),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocationEncoding(_DropoutMixin, layers.Layer):
    """The location MLP: two Dense → BN → LeakyReLU(0.3) stages, then dropout.

    Its output is added as a per-image bias to every pixel of the fused map.
    """

    def __init__(
        self,
        units: int,
        dropout: float = 0.0,
        mc_dropout: bool = False,
        train_dropout: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.dropout_rate = dropout
        self.mc_dropout = mc_dropout
        self.train_dropout = train_dropout
        self.dense1 = layers.Dense(units, name="dense1")
        self.bn1 = layers.BatchNormalization(synchronized=True, name="bn1")
        self.dense2 = layers.Dense(units, name="dense2")
        self.bn2 = layers.BatchNormalization(synchronized=True, name="bn2")
        self.drop = layers.Dropout(dropout, name="dropout") if dropout else None

    def build(self, input_shape: tuple) -> None:
        out = (*input_shape[:-1], self.units)
        self.dense1.build(input_shape)
        self.bn1.build(out)
        self.dense2.build(out)
        self.bn2.build(out)

    def call(self, x: Any, training: bool | None = None) -> Any:
        y = ops.leaky_relu(self.bn1(self.dense1(x), training=training), LRELU_LOCATION)
        y = ops.leaky_relu(self.bn2(self.dense2(y), training=training), LRELU_LOCATION)
        if self.drop is not None:
            y = self.drop(y, training=self._dropout_active(training))
        return ops.reshape(y, (-1, 1, 1, self.units))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], 1, 1, self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, **_dropout_config(self)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionalEmbedding(layers.Layer):
    """A learned embedding per patch position, added to the patch tokens (no class token)."""

    def build(self, input_shape: tuple) -> None:
        self.embedding = self.add_weight(
            name="positional_embedding",
            shape=tuple(input_shape[1:]),
            initializer=keras.initializers.RandomNormal(stddev=0.05),
        )

    def call(self, x: Any) -> Any:
        return x + ops.cast(self.embedding, x.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(_DropoutMixin, layers.Layer):
    """Pre-norm transformer block with the published GELU on *both* MLP dense layers."""

    def __init__(
        self,
        embedding: int,
        mlp: int,
        heads: int,
        dropout: float = 0.0,
        mc_dropout: bool = False,
        train_dropout: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embedding = embedding
        self.mlp = mlp
        self.heads = heads
        self.dropout_rate = dropout
        self.mc_dropout = mc_dropout
        self.train_dropout = train_dropout
        self.norm1 = layers.LayerNormalization(epsilon=1e-3, name="norm1")
        self.attention = layers.MultiHeadAttention(
            num_heads=heads, key_dim=embedding // heads, name="attention"
        )
        self.norm2 = layers.LayerNormalization(epsilon=1e-3, name="norm2")
        self.dense1 = layers.Dense(mlp, activation="gelu", name="dense1")
        self.dense2 = layers.Dense(embedding, activation="gelu", name="dense2")
        self.drop = layers.Dropout(dropout, name="dropout")

    def build(self, input_shape: tuple) -> None:
        self.norm1.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.norm2.build(input_shape)
        self.dense1.build(input_shape)
        self.dense2.build((*input_shape[:-1], self.mlp))

    def call(self, x: Any, training: bool | None = None) -> Any:
        active = self._dropout_active(training)
        h = self.norm1(x)
        a = x + self.attention(h, h, training=active)
        y = self.drop(self.dense1(self.norm2(a)), training=active)
        return a + self.drop(self.dense2(y), training=active)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "embedding": self.embedding,
            "mlp": self.mlp,
            "heads": self.heads,
            **_dropout_config(self),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SETR(_DropoutMixin, layers.Layer):
    """The SETR branch: 16×16 patch tokens → transformer → progressive-upsampling decoder.

    Tokens are flattened in (row, column, channel) order, the layout of
    ``tf.image.extract_patches`` that the published model used. The decoder has no activations.
    """

    def __init__(
        self,
        patch_size: int,
        filters: int,
        embedding: int = 64,
        blocks: int = 12,
        heads: int = 4,
        mlp: int = 256,
        decoder_filters: int = 64,
        token_size: int = 16,
        dropout: float = 0.0,
        mc_dropout: bool = False,
        train_dropout: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.filters = filters
        self.embedding = embedding
        self.blocks = blocks
        self.heads = heads
        self.mlp = mlp
        self.decoder_filters = decoder_filters
        self.token_size = token_size
        self.dropout_rate = dropout
        self.mc_dropout = mc_dropout
        self.train_dropout = train_dropout
        self.grid = patch_size // token_size
        self.patch_embedding = layers.Dense(embedding, name="patch_embedding")
        self.positional = PositionalEmbedding(name="positional")
        self.transformer = [
            TransformerBlock(
                embedding, mlp, heads, dropout, mc_dropout, train_dropout, name=f"block{i}"
            )
            for i in range(blocks)
        ]
        n = decoder_filters
        self.decoder_convs = []
        for i in range(4):
            self.decoder_convs += [
                layers.Conv2D(n, 3, padding="same", name=f"decoder_conv{i}"),
                layers.BatchNormalization(synchronized=True, name=f"decoder_bn{i}"),
            ]
        self.head = layers.Conv2D(filters, 1, name="decoder_head")
        self.upsample = layers.UpSampling2D(2, interpolation="bilinear", name="upsample")
        self._folded: tuple[FoldedConv, ...] = ()

    def build(self, input_shape: tuple) -> None:
        tokens = (None, self.grid * self.grid, self.token_size**2 * input_shape[-1])
        self.patch_embedding.build(tokens)
        embedded = (None, self.grid * self.grid, self.embedding)
        self.positional.build(embedded)
        for block in self.transformer:
            block.build(embedded)
        size, channels = self.grid, self.embedding
        for i in range(0, 8, 2):
            self.decoder_convs[i].build((None, size, size, channels))
            channels = self.decoder_filters
            self.decoder_convs[i + 1].build((None, size, size, channels))
            if i < 6:
                size *= 2
        self.head.build((None, size, size, channels))

    def call(self, x: Any, training: bool | None = None) -> Any:
        g, t = self.grid, self.token_size
        c = x.shape[-1]
        tokens = ops.reshape(x, (-1, g, t, g, t, c))
        tokens = ops.transpose(tokens, (0, 1, 3, 2, 4, 5))
        tokens = ops.reshape(tokens, (-1, g * g, t * t * c))
        y = self.positional(self.patch_embedding(tokens))
        for block in self.transformer:
            y = block(y, training=training)
        y = ops.reshape(y, (-1, g, g, self.embedding))
        if self._folded:
            check_inference(self, training)
        for i in range(0, 8, 2):
            if self._folded:
                y = self._folded[i // 2](y)
            else:
                y = self.decoder_convs[i + 1](self.decoder_convs[i](y), training=training)
            if i < 6:
                y = self.upsample(y)
        return self.upsample(self.head(y))

    def fold_batch_norm(self) -> int:
        """Fold the decoder's batch norms into its convolutions (:mod:`glaviz.model.folding`)."""
        if self._folded:
            return 0
        convs = self.decoder_convs
        self._folded = tuple(fold(convs[i], convs[i + 1]) for i in range(0, 8, 2))
        return len(self._folded)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*tuple(input_shape)[:-1], self.filters)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "filters": self.filters,
            "embedding": self.embedding,
            "blocks": self.blocks,
            "heads": self.heads,
            "mlp": self.mlp,
            "decoder_filters": self.decoder_filters,
            "token_size": self.token_size,
            **_dropout_config(self),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResUNet(_DropoutMixin, layers.Layer):
    """Residual U-Net: ``steps`` downsamplings from ``start_filters``, projected to ``filters``."""

    def __init__(
        self,
        filters: int,
        steps: int = 3,
        start_filters: int = 64,
        dropout: float = 0.0,
        mc_dropout: bool = False,
        train_dropout: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.steps = steps
        self.start_filters = start_filters
        self.dropout_rate = dropout
        self.mc_dropout = mc_dropout
        self.train_dropout = train_dropout
        args = (dropout, mc_dropout, train_dropout)
        widths = [start_filters * 2**i for i in range(steps + 1)]
        self.encoder = [Residual(n, *args, name=f"encoder{i}") for i, n in enumerate(widths)]
        decoder: list[layers.Layer] = []
        for i, n in enumerate(reversed(widths[:-1])):
            decoder += [UpConv(n, name=f"upconv{i}"), Residual(n, *args, name=f"decoder{i}")]
        self.decoder = decoder
        self.head = layers.Dense(filters, name="head")
        self.pool = layers.MaxPooling2D(2, name="pool")

    def build(self, input_shape: tuple) -> None:
        b, h, w, c = input_shape
        skips = []
        for i, block in enumerate(self.encoder):
            block.build((b, h, w, c))
            c = block.filters
            skips.append((b, h, w, c))
            if i < self.steps:
                h, w = _half(h), _half(w)
        for up, block in zip(self.decoder[::2], self.decoder[1::2], strict=True):
            up.build((b, h, w, c))
            skip = skips[len(skips) - 2 - self.decoder.index(up) // 2]
            h, w = skip[1], skip[2]
            block.build((b, h, w, up.filters + skip[3]))
            c = block.filters
        self.head.build((b, h, w, c))

    def call(self, x: Any, training: bool | None = None) -> Any:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x, training=training)
            if i < self.steps:
                skips.append(x)
                x = self.pool(x)
        for up, block in zip(self.decoder[::2], self.decoder[1::2], strict=True):
            x = ops.concatenate([up(x, training=training), skips.pop()], axis=-1)
            x = block(x, training=training)
        return self.head(x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*tuple(input_shape)[:-1], self.filters)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "steps": self.steps,
            "start_filters": self.start_filters,
            **_dropout_config(self),
        }


def _half(n: int | None) -> int | None:
    return None if n is None else n // 2
