"""``glaviz change``: glacier change between dates, glacier by glacier, with uncertainty."""

from __future__ import annotations

from typing import Any

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
from glaviz.config import ChangeConfig

#: Option names for the fields whose names are not the option (the help says the unit).
_OPTIONS = {
    "output": ["--output", "-o"],
    "dates": ["--date"],
    "min_area_km2": ["--min-area"],
}


@config_command("change", ChangeConfig, arguments={"inputs": "INPUT..."}, options=_OPTIONS)
def change(config: ChangeConfig) -> dict[str, Any]:
    """Glacier change between dates, glacier by glacier, with uncertainty.

    Inputs are outline GeoTIFFs, deploy output folders, inventory GeoPackages or batch output
    roots (scenes of one date mosaicked), compared on the grid of the earliest date. Glaciers
    are matched by reference id or largest overlap (same, split, merge, vanished, new); area,
    change and rate are counted only where both dates were observed, the rest is unobserved
    area. Writes change.gpkg, change.csv, change.tif, change.png and run.json into the output
    folder.

    Example: glaviz change out2017/ out2023/ --date out2017=2017-08-20 -o change/
    """
    return run_engine(api.change, config)
