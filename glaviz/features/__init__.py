"""Feature stacks: the aligned, physical-unit GeoTIFF that ``glaviz features`` writes.

:func:`compile_stack` is the engine of the command; :mod:`glaviz.features.slope` holds Horn's
slope. Both import rasterio, so the CLI imports this package only inside the command body.
"""

from __future__ import annotations

from glaviz.features.slope import horn_slope, metres_per_degree, slope_degrees, write_slope
from glaviz.features.stack import INPUTS, StackResult, compile_stack, warped_view

__all__ = [
    "INPUTS",
    "StackResult",
    "compile_stack",
    "horn_slope",
    "metres_per_degree",
    "slope_degrees",
    "warped_view",
    "write_slope",
]
