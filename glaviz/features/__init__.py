"""Feature stacks: the aligned, physical-unit GeoTIFF that ``glaviz features`` writes.

:func:`compile_stack` builds one from raster inputs, :func:`convert_published` from a published
``compile_features.py`` file (read through an allow-list unpickler), and :func:`run_features`
picks between them for the command. :mod:`glaviz.features.slope` holds Horn's slope. All import
rasterio, so the CLI imports this package only inside the command body.
"""

from __future__ import annotations

from glaviz.features.published import convert_published, load_published
from glaviz.features.run import run_features
from glaviz.features.slope import horn_slope, metres_per_degree, slope_degrees, write_slope
from glaviz.features.stack import INPUTS, StackResult, compile_stack, warped_view

__all__ = [
    "INPUTS",
    "StackResult",
    "compile_stack",
    "convert_published",
    "horn_slope",
    "load_published",
    "metres_per_degree",
    "run_features",
    "slope_degrees",
    "warped_view",
    "write_slope",
]
