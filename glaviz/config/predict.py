"""``glaviz predict`` options."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from glaviz.config.base import (
    CommandConfig,
    overwrite_field,
    parse_feature_list,
    skip_existing_field,
)
from glaviz.config.deploy import MAX_BATCH_SIZE, Precision


class PredictConfig(CommandConfig):
    """A model, a benchmark split and the predictions file to write."""

    NAME_OR_PATH_FIELDS: ClassVar[frozenset[str]] = frozenset({"weights"})

    weights: str = Field(description="Registry name, .h5 checkpoint or .glaviz bundle.")
    dataset: Path = Field(description="Benchmark split (HDF5), e.g. test.h5.")
    output: Path = Field(description="Predictions HDF5 to write.")
    features: tuple[str, ...] | None = Field(
        None, description="Feature groups of a .h5 checkpoint, in model order."
    )
    region: list[str] | None = Field(None, description="Only tiles of this region (repeatable).")
    subregion: list[str] | None = Field(
        None, description="Only tiles of this subregion (repeatable)."
    )
    tta: bool = Field(False, description="Average the 8 flips and rotations of each window.")
    mc: int = Field(0, ge=0, description="Monte Carlo dropout passes to average (0: off).")
    batch_size: int | None = Field(
        None,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Windows per model call (default: 1 on CPU, 8 on GPU; at most "
        f"{MAX_BATCH_SIZE}).",
    )
    precision: Precision = Field("float32", description="float32, bfloat16 or float16 (GPU).")
    overwrite: bool = overwrite_field("OUTPUT")
    skip_existing: bool = skip_existing_field()

    @field_validator("features", mode="before")
    @classmethod
    def _parse_features(cls, value: object) -> object:
        return parse_feature_list(value)
