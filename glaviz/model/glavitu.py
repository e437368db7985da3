"""GlaViTU assembled from its blocks: configuration, size presets and the two Keras models.

The training model has both heads (``deepsupervision`` and ``output``); the inference model is a
view of the same graph with only ``output``, so the two always share weights.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from glaviz.errors import ConfigError
from glaviz.published.groups import GROUP_BANDS

#: Published model sizes (the default) and a reduced size for tests and demos.
PRESETS: dict[str, dict[str, int]] = {
    "paper": {
        "width": 64,
        "embedding": 64,
        "blocks": 12,
        "heads": 4,
        "mlp": 256,
        "decoder_filters": 64,
        "unet_steps": 3,
        "unet_filters": 64,
    },
    "tiny": {
        "width": 16,
        "embedding": 32,
        "blocks": 2,
        "heads": 2,
        "mlp": 64,
        "decoder_filters": 16,
        "unet_steps": 2,
        "unet_filters": 16,
    },
}

TOKEN_SIZE = 16

LocationEncoding = Literal["none", "region", "coordinate"]

# Bounds of every size a config can set. A bundle's metadata names its architecture and the model
# is built before its weights are read, so an untrusted bundle could otherwise ask for any amount
# of memory. Each bound is a small multiple of the published model (PRESETS["paper"]); at all of
# them together the training model has 85 M parameters (340 MB in float32), 8.5 times the
# published 10.0 M, which the bundle limits of glaviz.model.bundle still admit.
#: Groups of input bands: the published models use at most 6 (optical, dem, SAR, thermal).
MAX_FEATURE_GROUPS = 16
#: Bands in one group: the published groups have at most 6 (optical).
MAX_GROUP_BANDS = 64
#: Characters in a group name (it becomes a Keras input name).
MAX_GROUP_NAME = 64
#: Channels of the U-Net's deepest level, ``unet_filters * 2**unet_steps``: twice the published 512.
#: Its convolutions' parameters grow with the square, so this is most of the 85 M.
MAX_UNET_WIDTH = 1024


class GlaViTUConfig(BaseModel):
    """Everything that determines GlaViTU's architecture (and so its weight shapes).

    ``feature_groups`` maps input names to band counts, in input order. Names are usually the
    published groups (``optical``, ``dem``, …) but any name is accepted, so checkpoints with
    custom inputs load too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature_groups: dict[str, int] = Field(default_factory=lambda: {"optical": 6, "dem": 2})
    #: At most 1024 (2.7 × 384): (1024 / 16)**2 = 4096 tokens, so one window's attention
    #: matrices at the most heads (16) take 4096**2 × 16 × 4 bytes = 1 GiB.
    patch_size: int = Field(384, le=1024)
    #: At most 64 (32 × 2 classes): one probability per class and pixel of every window.
    n_classes: int = Field(2, le=64)
    #: At most 64 (5 × the 12 region slots of the published region encoding).
    location_size: int = Field(0, le=64)
    location_encoding: LocationEncoding = "none"
    # Widths: at most 4 × the published 64 (256 for the MLP), heads 4 × 4; parameters grow with
    # the square of a width. Blocks: at most 2 × 12, each adds 4·embedding² + 2·embedding·mlp.
    width: int = Field(64, ge=1, le=256)
    embedding: int = Field(64, ge=1, le=256)
    blocks: int = Field(12, ge=0, le=24)
    heads: int = Field(4, ge=1, le=16)
    mlp: int = Field(256, ge=1, le=1024)
    decoder_filters: int = Field(64, ge=1, le=256)
    #: At most 5 (published 3), and with unet_filters within MAX_UNET_WIDTH at the deepest level.
    unet_steps: int = Field(3, ge=0, le=5)
    unet_filters: int = Field(64, ge=1, le=256)
    dropout: float = 0.1
    mc_dropout: bool = False
    train_dropout: bool = False

    @field_validator("feature_groups")
    @classmethod
    def _groups(cls, groups: dict[str, int]) -> dict[str, int]:
        if not groups:
            raise ValueError("at least one feature group is needed, e.g. optical and dem")
        if len(groups) > MAX_FEATURE_GROUPS:
            raise ValueError(f"{len(groups)} feature groups; at most {MAX_FEATURE_GROUPS}")
        for name, bands in groups.items():
            if not 0 < len(name) <= MAX_GROUP_NAME:
                raise ValueError(
                    f"group names have 1 to {MAX_GROUP_NAME} characters: {name[:80]!r}"
                )
            if bands < 1:
                raise ValueError(f"group {name!r} must have at least one band, got {bands}")
            if bands > MAX_GROUP_BANDS:
                raise ValueError(
                    f"group {name!r} has {bands} bands; at most {MAX_GROUP_BANDS} per group"
                )
        return groups

    @model_validator(mode="after")
    def _consistent(self) -> GlaViTUConfig:
        down = 2**self.unet_steps
        if self.patch_size <= 0 or self.patch_size % TOKEN_SIZE:
            raise ValueError(
                f"patch size must be a positive multiple of {TOKEN_SIZE}, got {self.patch_size}"
            )
        if self.patch_size % down:
            raise ValueError(
                f"patch size {self.patch_size} must be divisible by 2**unet_steps = {down}"
            )
        deepest = self.unet_filters * 2**self.unet_steps
        if deepest > MAX_UNET_WIDTH:
            raise ValueError(
                f"unet_filters × 2**unet_steps = {deepest} channels at the U-Net's deepest level; "
                f"at most {MAX_UNET_WIDTH}"
            )
        if self.embedding % self.heads:
            raise ValueError(f"embedding {self.embedding} must be divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {self.n_classes}")
        if self.location_size < 0:
            raise ValueError(f"location_size must be >= 0, got {self.location_size}")
        if self.location_encoding == "coordinate" and self.location_size not in (0, 4):
            raise ValueError("coordinate encoding has size 4 (sin/cos of latitude and longitude)")
        if self.location_encoding == "none" and self.location_size:
            raise ValueError("location_size is set but location_encoding is 'none'")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_location_size(cls, values: Any) -> Any:
        # region encoding: 11 regions + "unknown"; coordinate encoding: sin/cos of lat and lon.
        if isinstance(values, dict) and not values.get("location_size"):
            encoding = values.get("location_encoding", "none")
            if encoding != "none":
                values = {**values, "location_size": 4 if encoding == "coordinate" else 12}
        return values

    @classmethod
    def create(
        cls,
        *,
        features: dict[str, int] | list[str] | tuple[str, ...] | None = None,
        preset: str = "paper",
        **overrides: Any,
    ) -> GlaViTUConfig:
        """Build a config from a preset, feature groups (names or name→bands) and overrides.

        Raises :class:`ConfigError` with the field that is wrong, so the CLI shows one line.
        """
        if preset not in PRESETS:
            raise ConfigError(f"unknown model size preset {preset!r}; use one of {list(PRESETS)}")
        if features is not None and not isinstance(features, dict):
            unknown = [g for g in features if g not in GROUP_BANDS]
            if unknown:
                raise ConfigError(
                    f"unknown feature group(s) {unknown}; known: {', '.join(GROUP_BANDS)}"
                )
            features = {g: GROUP_BANDS[g] for g in features}
        values: dict[str, Any] = {**PRESETS[preset], **overrides}
        if features is not None:
            values["feature_groups"] = dict(features)
        return validated(values)

    @property
    def uses_location(self) -> bool:
        return self.location_size > 0

    def describe(self) -> str:
        """Human-readable summary used in error messages: ``optical(6)+dem(2), region(12)``."""
        groups = "+".join(f"{g}({n})" for g, n in self.feature_groups.items())
        if self.uses_location:
            return f"{groups}, location {self.location_encoding}({self.location_size})"
        return f"{groups}, no location input"


def validated(values: dict[str, Any]) -> GlaViTUConfig:
    """Validate a config dict, turning pydantic's report into one ConfigError line."""
    from pydantic import ValidationError

    try:
        return GlaViTUConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'model'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid model configuration: {problems}") from None


def build_glavitu(config: GlaViTUConfig, *, name: str = "GlaViTU") -> tuple[Any, Any]:
    """Create GlaViTU's training model (two heads) and its inference model (``output`` only).

    Inputs are named after the feature groups (plus ``location`` when used) and the models take
    a dict of arrays. The training model returns ``{"deepsupervision": …, "output": …}``.
    The softmax heads always compute in float32 so mixed precision keeps stable probabilities.
    """
    import keras

    from glaviz.model import layers as gl

    drop = {
        "dropout": config.dropout,
        "mc_dropout": config.mc_dropout,
        "train_dropout": config.train_dropout,
    }
    p = config.patch_size
    inputs = {g: keras.Input((p, p, c), name=g) for g, c in config.feature_groups.items()}
    fused = gl.FusionBlock(config.width, len(inputs), **drop, name="fusion_block")(
        list(inputs.values())
    )
    if config.uses_location:
        location = keras.Input((config.location_size,), name="location")
        inputs["location"] = location
        bias = gl.LocationEncoding(config.width, **drop, name="location_encoding_block")(location)
        fused = keras.layers.Add(name="add_location")([fused, bias])
    setr = gl.SETR(
        p,
        config.width,
        embedding=config.embedding,
        blocks=config.blocks,
        heads=config.heads,
        mlp=config.mlp,
        decoder_filters=config.decoder_filters,
        token_size=TOKEN_SIZE,
        **drop,
        name="SETR",
    )(fused)
    e1 = keras.layers.Add(name="add_setr")([setr, fused])
    deep = keras.layers.Dense(
        config.n_classes, activation="softmax", dtype="float32", name="deepsupervision"
    )(e1)
    unet = gl.ResUNet(
        config.width,
        steps=config.unet_steps,
        start_filters=config.unet_filters,
        **drop,
        name="ResUNet",
    )(e1)
    e = keras.layers.Add(name="add_unet")([e1, unet])
    output = keras.layers.Dense(
        config.n_classes, activation="softmax", dtype="float32", name="output"
    )(e)
    train = keras.Model(inputs, {"deepsupervision": deep, "output": output}, name=name)
    infer = keras.Model(inputs, output, name=f"{name}_inference")
    return train, infer
