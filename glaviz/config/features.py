"""``glaviz features`` options."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import Field, model_validator

from glaviz.config.base import CommandConfig, overwrite_field, skip_existing_field

#: The raster inputs, in ``compile_stack`` keyword order.
RASTER_INPUTS: tuple[str, ...] = (
    "optical",
    "elevation",
    "slope",
    "co_pol_sar",
    "cross_pol_sar",
    "in_sar",
    "thermal",
)


class FeaturesConfig(CommandConfig):
    """One ``glaviz features`` run: raster inputs, or one published feature file, and the stack.

    Either ``from_published`` alone, or ``optical`` and ``elevation`` (plus any optional rasters).
    """

    output: Path = Field(description="Stack GeoTIFF to write.")
    from_published: Path | None = Field(
        None,
        description="A published AREA_features.pickle (compile_features.py output) to convert, "
        "instead of raster inputs.",
    )
    optical: Path | None = Field(None, description="Optical raster: 6 TOA reflectance bands.")
    elevation: Path | None = Field(None, description="DEM, 1 band, metres.")
    slope: Path | None = Field(
        None, description="Slope in degrees; computed from the DEM if absent."
    )
    co_pol_sar: Path | None = Field(None, description="Co-pol sigma0, 2 bands, linear.")
    cross_pol_sar: Path | None = Field(None, description="Cross-pol sigma0, 2 bands, linear.")
    in_sar: Path | None = Field(None, description="InSAR coherence, 2 bands.")
    thermal: Path | None = Field(None, description="Thermal band, 1 band, K.")
    date: dt.date | None = Field(
        None,
        description="Date of the imagery (YYYY-MM-DD), tagged on the stack so that deploy, "
        "inventory and change know it; default: the optical raster's own ACQUISITION_DATE tag "
        "(glaviz acquire writes one), else none.",
    )
    overwrite: bool = overwrite_field("an existing output")
    skip_existing: bool = skip_existing_field()

    @model_validator(mode="after")
    def _one_source(self) -> FeaturesConfig:
        given = list(self.inputs())
        if self.from_published is not None:
            if given:
                raise ValueError(
                    "from_published (--from-published) replaces the raster inputs; drop "
                    + ", ".join(given)
                )
            if self.date is not None:
                raise ValueError(
                    "date (--date) dates raster inputs; a published feature file is converted "
                    "as it is"
                )
            return self
        missing = [n for n in ("optical", "elevation") if n not in given]
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} required (--optical, --elevation), unless "
                "from_published (--from-published) names a published feature file"
            )
        return self

    def inputs(self) -> dict[str, Path]:
        """The input rasters given, by field name (the keyword names of ``compile_stack``)."""
        return {n: getattr(self, n) for n in RASTER_INPUTS if getattr(self, n) is not None}
