"""``glaviz inventory`` options: the one definition of the command's settings.

Lengths are in metres and areas in km², so that a setting means the same thing at every
resolution. Where a default comes from the literature, the field says from where; the reasoning
is in docs/inventory.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from glaviz.config.base import CommandConfig, overwrite_field, skip_existing_field

Method = Literal["auto", "reference", "dem"]


class InventoryConfig(CommandConfig):
    """Everything one ``glaviz inventory`` run depends on, besides the data."""

    source: Path = Field(
        description="Deploy output folder (its outlines.tif is read) or an outline GeoTIFF "
        "(1 = ice, 0 = no ice, nodata = invalid)."
    )
    dem: Path = Field(description="DEM GeoTIFF in metres; warped onto the outlines' grid.")
    output: Path = Field(description="GeoPackage to write (layers glaciers, hypsometry, …).")
    reference: Path | None = Field(
        None, description="Reference inventory (GeoPackage, shapefile, GeoJSON), e.g. RGI."
    )
    reference_id: str | None = Field(
        None,
        description="Column of the reference that holds the glacier id (default: rgi_id, "
        "RGIId, GLIMSId, glac_id or id, whichever exists).",
    )
    method: Method = Field(
        "auto",
        description="reference: copy the reference's divides; dem: Kienholz et al. (2013) "
        "flowsheds; auto: reference when one is given (complexes it does not touch are split "
        "from the DEM), else dem.",
    )
    min_area_km2: float = Field(
        0.01,
        ge=0,
        description="Pieces of a split smaller than this are merged into the neighbour with the "
        "longest shared boundary (RGI's smallest glacier, 0.01 km²).",
    )
    drop_small_patches: bool = Field(
        True,
        description="Leave out isolated ice patches (complexes) smaller than --min-area: RGI "
        "lists no glacier below 0.01 km², and a one-pixel patch is classifier noise, not a "
        "glacier. --no-drop-small-patches keeps them; pieces of a split are merged either way.",
    )
    max_hole_pixels: int = Field(
        4,
        ge=0,
        description="Holes in the ice of at most this many pixels are classifier noise and are "
        "filled; larger ones are nunataks and kept.",
    )
    band_m: float = Field(50.0, gt=0, description="Elevation band of the hypsometry (RGI: 50 m).")
    gutter_distance_m: float = Field(
        40.0,
        gt=0,
        description="Distance from the outline to the inner edge of the gutter (Kienholz et al. "
        "2013: one 40 m cell).",
    )
    gutter_width_m: float = Field(
        40.0, gt=0, description="Width of the gutter (Kienholz et al. 2013: one 40 m cell)."
    )
    gutter_depth_m: float = Field(
        100.0, gt=0, description="How far the gutter is lowered (Kienholz et al. 2013: 100 m)."
    )
    radius_a: float = Field(
        14.3,
        gt=0,
        description="Merge radius r = min(radius_max_m, radius_a · N^radius_b) in metres, N "
        "the pour point's flow accumulation in 40 m cells (Kienholz et al. 2013: 14.3).",
    )
    radius_b: float = Field(0.5, gt=0, description="Exponent of the merge radius (0.5).")
    radius_max_m: float = Field(3500.0, gt=0, description="Largest merge radius (3500 m).")
    radius_cell_m: float = Field(
        40.0,
        gt=0,
        description="Cell size the radius parameters were calibrated on; accumulation is "
        "counted in cells of this size, whatever the DEM's resolution.",
    )
    sliver_area_km2: float = Field(
        0.1,
        ge=0,
        description="Merged flowsheds smaller than this are slivers (Kienholz et al. 2013).",
    )
    sliver_compact_area_km2: float = Field(
        0.2,
        ge=0,
        description="Merged flowsheds smaller than this are slivers when also elongated.",
    )
    sliver_compactness: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Elongated: 2·sqrt(π·area) / perimeter below this (1 for a circle).",
    )
    overwrite: bool = overwrite_field("an existing GeoPackage")
    skip_existing: bool = skip_existing_field("the GeoPackage")

    @model_validator(mode="after")
    def _reference_for_reference_mode(self) -> InventoryConfig:
        if self.method == "reference" and self.reference is None:
            raise ValueError("method 'reference' needs a reference inventory (--reference)")
        if self.sliver_compact_area_km2 < self.sliver_area_km2:
            raise ValueError(
                "sliver_compact_area_km2 must be at least sliver_area_km2 "
                f"({self.sliver_compact_area_km2} < {self.sliver_area_km2})"
            )
        return self

    @property
    def uses_reference(self) -> bool:
        """Whether reference divides are copied (auto with a reference, or reference)."""
        return self.reference is not None and self.method != "dem"

    @property
    def outlines(self) -> Path:
        """The outline raster read: ``source`` itself, or a deploy folder's ``outlines.tif``."""
        return self.source / "outlines.tif" if self.source.is_dir() else self.source

    def input_files(self) -> dict[str, Path]:
        """Inputs for the run record: the outline raster itself, not its folder."""
        found = super().input_files()
        found["source"] = self.outlines
        return found
