"""``glaviz optimise-bias`` options."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from glaviz.config.base import CommandConfig, overwrite_field, skip_existing_field
from glaviz.config.deploy import MAX_BATCH_SIZE


class OptimiseBiasConfig(CommandConfig):
    """A scene, a region-encoding model and the region vector to write."""

    NAME_OR_PATH_FIELDS: ClassVar[frozenset[str]] = frozenset({"weights"})

    stack: Path = Field(description="Feature stack GeoTIFF made by glaviz features.")
    weights: str = Field(description="A region-encoding model: name, .h5 or .glaviz.")
    output: Path = Field(description="Region vector JSON to write.")
    epochs: int = Field(100, ge=1, description="Most epochs to run (early stop as published).")
    seed: int = Field(0, description="Seed of the random windows.")
    batch_size: int = Field(
        8,
        ge=1,
        le=MAX_BATCH_SIZE,
        description=f"Windows per optimisation step (at most {MAX_BATCH_SIZE}).",
    )
    learning_rate: float = Field(1e-4, gt=0, description="Adam learning rate.")
    overwrite: bool = overwrite_field("OUTPUT")
    skip_existing: bool = skip_existing_field()
