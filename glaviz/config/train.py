"""``glaviz train`` options: one nested TOML file (``[data]``, ``[model]``, ``[training]``,
``[augment]``) instead of flat command-line options, because a training run has too many settings
to type and is re-run from its file.

Every section forbids unknown keys, so a typo (``paches_size``) is an error, not a silently
ignored setting. The file is read like every other config file (:mod:`glaviz.config.loading`):
relative paths are relative to the file, ``--set KEY=VALUE`` overrides are relative to the working
directory, and every problem is one line naming its dotted key (``model.patch_size: must be a
multiple of 16, got 100``). Defaults reproduce the published training and fine-tuning recipe
(Maslov et al. 2025); ``docs/training.md`` documents every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from glaviz.published.groups import REGIONS, parse_features

#: Published cosine restarts (epochs) and start learning rates.
RESTART_EPOCHS: tuple[int, ...] = (10, 30, 70, 150)
LEARNING_RATE = 5e-4
FINETUNE_LEARNING_RATE = 5e-5
FINETUNE_EPOCHS = 80


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: ``str`` fields holding a registry name or a path (see :class:`CommandConfig`); the loader
    #: makes them absolute only when they look like a path.
    NAME_OR_PATH_FIELDS: ClassVar[frozenset[str]] = frozenset()


class DataSection(_Section):
    """Where the benchmark splits are and which part of them to use."""

    train: Path
    val: Path
    test: Path | None = None
    features: list[str] = Field(default_factory=lambda: ["optical", "dem"])
    regions: list[str] = Field(default_factory=list)
    subregions: list[str] = Field(default_factory=list)

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: object) -> object:
        # ``--set data.features=optical,dem`` arrives as one string; the feature-group rules
        # (known names, no repeats) are the ones every command uses.
        names = isinstance(value, str) or (
            isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        )
        if names:
            if not value:
                raise ValueError("name at least one feature group, e.g. ['optical', 'dem']")
            return list(parse_features(value))  # type: ignore[arg-type]
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in REGIONS]
        if unknown:
            raise ValueError(
                f"unknown region(s) {', '.join(unknown)}; benchmark regions: {', '.join(REGIONS)}"
            )
        return value


class ModelSection(_Section):
    """The architecture: size preset, patch size, location input, dropout."""

    preset: Literal["paper", "tiny"] = "paper"
    patch_size: int = 384
    location_encoding: Literal["none", "region", "coordinate"] = "none"
    #: Real dropout during training. The published layers called dropout with the Monte Carlo
    #: flag instead of Keras' training flag, so it never acted in training: off reproduces them.
    train_dropout: bool = False
    dropout: float = 0.1

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, value: int) -> int:
        if value < 16 or value % 16:
            raise ValueError(f"must be a multiple of 16, got {value}")
        return value

    @field_validator("dropout")
    @classmethod
    def _dropout(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"must be in [0, 1), got {value}")
        return value


class TrainingSection(_Section):
    """Strategy, optimisation and schedule."""

    NAME_OR_PATH_FIELDS: ClassVar[frozenset[str]] = frozenset({"weights"})

    strategy: Literal["global", "regional", "finetune"] = "global"
    #: Starting point for ``finetune``: a registry name, a published .h5 or a .glaviz bundle.
    weights: str | None = None
    #: Default: the last restart epoch (150), or 80 for fine-tuning.
    epochs: int | None = None
    batch_size: int = 8
    #: 0 = the published length: 4 × (whole patches in the training tiles) // batch size.
    steps_per_epoch: int = 0
    #: 0 = every consecutive validation window once per epoch.
    validation_steps: int = 0
    #: Default 5e-4, or 5e-5 for fine-tuning.
    learning_rate: float | None = None
    #: Cosine warm restarts at these epochs. Default [10, 30, 70, 150]; for fine-tuning one
    #: cosine decay over all epochs.
    restart_epochs: list[int] | None = None
    focal_gamma: float = 2.0
    deep_supervision_weight: float = 0.5
    output_weight: float = 1.0
    mixed_precision: bool = False
    seed: int = 0

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("steps_per_epoch", "validation_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be 0 (automatic) or positive, got {value}")
        return value

    @field_validator("learning_rate")
    @classmethod
    def _lr(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(f"must be in (0, 1), got {value}")
        return value

    @field_validator("restart_epochs")
    @classmethod
    def _restarts(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if not value or any(b <= a for a, b in zip([0, *value], value, strict=False)):
            raise ValueError(f"must be increasing positive epochs, got {value}")
        return value

    @field_validator("focal_gamma", "deep_supervision_weight", "output_weight")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"must be >= 0, got {value}")
        return value


class AugmentSection(_Section):
    """Training augmentations, each switchable. Defaults are the published default set."""

    flips: bool = True
    rotations: bool = True
    crop_and_scale: bool = True
    #: Per-channel gamma in [0.8, 1.2] (published ``--contrast``).
    gamma_contrast: bool = False
    #: A random rectangle of each group set to 0 (published ``--occlusion``).
    occlusion: bool = False
    #: Largest occlusion side in pixels; default half the patch (192 at 384).
    occlusion_size: int | None = None
    #: Gaussian shift (sigma 0.025) and noise (sigma 0.005) per group (published ``--noise``).
    noise: bool = False
    label_smoothing: float = 0.0
    #: Probability of replacing the region one-hot by "unknown" (region encoding only).
    unknown_region: float = 0.1

    @field_validator("label_smoothing", "unknown_region")
    @classmethod
    def _prob(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"must be in [0, 1), got {value}")
        return value


class TrainConfig(_Section):
    """A whole ``glaviz train`` configuration."""

    #: Until this release ``glaviz train`` took relative paths in its config file from the
    #: working directory. The loader turns a path that only works that old way into a
    #: :class:`~glaviz.errors.ConfigError` showing what to write instead, rather than letting the
    #: run fail later on a missing file (or, for ``output``, start a new run elsewhere).
    CWD_RELATIVE_UNTIL_NOW: ClassVar[bool] = True

    #: Relative defaults stay relative to the working directory (they are in no file).
    output: Path = Path("runs/glavitu")
    data: DataSection
    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)

    @model_validator(mode="after")
    def _strategy(self) -> TrainConfig:
        t, d = self.training, self.data
        if t.strategy == "finetune" and not t.weights:
            raise ValueError(
                "training.strategy = 'finetune' needs training.weights (or --weights): a registry "
                "name, a .h5 checkpoint or a .glaviz bundle"
            )
        if t.strategy == "regional" and not (d.regions or d.subregions):
            raise ValueError("training.strategy = 'regional' needs data.regions or data.subregions")
        if t.strategy == "global" and (d.regions or d.subregions):
            raise ValueError(
                "training.strategy = 'global' trains on every region; to train on "
                "data.regions/subregions use strategy = 'regional'"
            )
        return self

    # Resolved recipe values -----------------------------------------------------------------

    @property
    def finetuning(self) -> bool:
        return self.training.strategy == "finetune"

    @property
    def epochs(self) -> int:
        if self.training.epochs is not None:
            return self.training.epochs
        if self.finetuning:
            return FINETUNE_EPOCHS
        return (self.training.restart_epochs or list(RESTART_EPOCHS))[-1]

    @property
    def learning_rate(self) -> float:
        if self.training.learning_rate is not None:
            return self.training.learning_rate
        return FINETUNE_LEARNING_RATE if self.finetuning else LEARNING_RATE

    @property
    def restart_epochs(self) -> list[int]:
        if self.training.restart_epochs is not None:
            return list(self.training.restart_epochs)
        return [self.epochs] if self.finetuning else list(RESTART_EPOCHS)

    @property
    def occlusion_size(self) -> int:
        return self.augment.occlusion_size or self.model.patch_size // 2
