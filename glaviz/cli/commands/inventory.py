"""``glaviz inventory``: split glacier complexes into glaciers with RGI-style attributes."""

from __future__ import annotations

from typing import Any

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
from glaviz.config import InventoryConfig

#: Short option names for the fields whose names carry their unit (the help says the unit).
_OPTIONS = {
    "output": ["--output", "-o"],
    "min_area_km2": ["--min-area"],
    "band_m": ["--band"],
    "gutter_distance_m": ["--gutter-distance"],
    "gutter_width_m": ["--gutter-width"],
    "gutter_depth_m": ["--gutter-depth"],
    "radius_max_m": ["--radius-max"],
    "radius_cell_m": ["--radius-cell"],
    "sliver_area_km2": ["--sliver-area"],
    "sliver_compact_area_km2": ["--sliver-compact-area"],
}


@config_command(
    "inventory", InventoryConfig, arguments={"source": "OUTDIR|OUTLINES.tif"}, options=_OPTIONS
)
def inventory(config: InventoryConfig) -> dict[str, Any]:
    """Split glacier complexes into glaciers along ice divides, with RGI-style attributes.

    Divides are copied from a reference inventory (marker watershed on the DEM) or found from
    the DEM alone (Kienholz et al. 2013). Writes the layers glaciers, hypsometry, divides and
    vanished, and a run record beside the GeoPackage (GLACIERS.gpkg.run.json).

    Example: glaviz inventory out/ --dem dem.tif --reference rgi.gpkg --reference-id rgi_id
    -o glaciers.gpkg
    """
    return run_engine(api.inventory, config)
