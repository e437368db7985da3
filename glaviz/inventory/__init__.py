"""Glacier inventory: split ice complexes into glaciers along ice divides, with RGI attributes.

``build_inventory(config)`` is the engine of ``glaviz inventory``. The modules follow the data:
``grid`` (working grid, DEM warp, reference rasterisation), ``reference`` (marker watershed),
``flowsheds`` (Kienholz et al. 2013), ``cleanup`` (holes, slivers), ``attributes`` (RGI/OGGM
attributes, hypsometry) and ``output`` (GeoPackage, run record). The package is callable as
the notebook function ``glaviz.inventory(config)`` (see :mod:`glaviz.util.modules` for why).
"""

from glaviz.inventory.build import InventoryResult, build_inventory
from glaviz.util.modules import callable_package

__all__ = ["InventoryResult", "build_inventory"]

callable_package(__name__, "glaviz.api:inventory")
