"""``glaviz features`` options."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from glaviz.config.base import CommandConfig, overwrite_field, skip_existing_field


class FeaturesConfig(CommandConfig):
    """Input rasters and the output stack of one ``glaviz features`` run."""

    output: Path = Field(description="Stack GeoTIFF to write.")
    optical: Path = Field(description="Optical raster: 6 TOA reflectance bands.")
    elevation: Path = Field(description="DEM, 1 band, metres.")
    slope: Path | None = Field(
        None, description="Slope in degrees; computed from the DEM if absent."
    )
    co_pol_sar: Path | None = Field(None, description="Co-pol sigma0, 2 bands, linear.")
    cross_pol_sar: Path | None = Field(None, description="Cross-pol sigma0, 2 bands, linear.")
    in_sar: Path | None = Field(None, description="InSAR coherence, 2 bands.")
    thermal: Path | None = Field(None, description="Thermal band, 1 band, K.")
    overwrite: bool = overwrite_field("an existing output")
    skip_existing: bool = skip_existing_field()

    def inputs(self) -> dict[str, Path]:
        """The input rasters given, by field name (the keyword names of ``compile_stack``)."""
        names = (
            "optical",
            "elevation",
            "slope",
            "co_pol_sar",
            "cross_pol_sar",
            "in_sar",
            "thermal",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}
