"""Glacier inventory: split ice complexes into glaciers along ice divides, with RGI attributes.

``build_inventory(config)`` is the engine of ``glaviz inventory``. The modules follow the data:
``grid`` (working grid, DEM warp, reference rasterisation), ``reference`` (marker watershed),
``flowsheds`` (Kienholz et al. 2013), ``cleanup`` (holes, slivers), ``attributes`` (RGI/OGGM
attributes, hypsometry) and ``output`` (GeoPackage, run record).
"""

from glaviz.inventory.build import InventoryResult, build_inventory

__all__ = ["InventoryResult", "build_inventory"]
