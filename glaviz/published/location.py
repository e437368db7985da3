"""The model's ``location`` input, built in one place for deploy, predict, training and bias.

GlaViTU optionally takes a location vector:

* region encoding: a one-hot over the model's regions plus a final ``"unknown"`` slot. The
  published region-encoding models use the 11 benchmark regions in sorted order, then
  ``"unknown"`` — the order the registry records as ``region_order`` (``data/registry.toml``).
  :func:`region_names` is the one place that turns a model into that list of names;
* coordinate encoding: ``[sin lat, cos lat, sin lon, cos lon]`` with the angles in **radians**
  (the published deploy script fed degrees to sin/cos; training used radians, so glaviz uses
  radians everywhere).

Numpy only at module level; rasterio loads only for :class:`SceneCoordinates`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from glaviz.errors import InputError

#: The last slot of every region encoding: a region the model was not trained on.
UNKNOWN_REGION = "unknown"

Encoding = Literal["region", "coordinate"]


def published_region_order() -> tuple[str, ...]:
    """The regions of the published region-encoding models, in one-hot order.

    Read from the packaged registry (the entry with ``location = "region"``), so a checkpoint
    given by path gets exactly the names the registry gives the same checkpoint by name.
    """
    from glaviz.registry.catalogue import load_registry

    for entry in load_registry().models:
        if entry.location == "region" and entry.region_order:
            return tuple(entry.region_order)
    from glaviz.published.groups import (
        REGIONS,  # a registry without one: the benchmark regions, sorted
    )

    return tuple(sorted(REGIONS))


def region_names(location_size: int, *, known: Sequence[str] | None = None) -> list[str]:
    """Names of a region encoding's slots, ``"unknown"`` last.

    ``known`` is what the model itself says: a bundle's stored names (``unknown`` included) or a
    registry entry's ``region_order`` (without it). Without them, a location input of the
    published size (11 regions + unknown) gets the published order, and any other size the
    placeholders ``region1`` … ``regionN`` (which match no benchmark region).
    """
    if known:
        names = list(known)
        if names[-1] != UNKNOWN_REGION:
            names.append(UNKNOWN_REGION)
        if len(names) == location_size:
            return names
    order = published_region_order()
    if location_size == len(order) + 1:
        return [*order, UNKNOWN_REGION]
    return [f"region{i + 1}" for i in range(location_size - 1)] + [UNKNOWN_REGION]


def coordinates(lat: float, lon: float) -> np.ndarray:
    """``[sin lat, cos lat, sin lon, cos lon]`` of a point in degrees, angles taken in radians."""
    la, lo = math.radians(lat), math.radians(lon)
    return np.array([math.sin(la), math.cos(la), math.sin(lo), math.cos(lo)], np.float32)


class _Tile(Protocol):
    name: str
    region: str

    def window_centre(self, row: int, col: int, size: int) -> tuple[float, float] | None: ...


@dataclass(frozen=True)
class LocationEncoder:
    """Builds the ``location`` input: region one-hot (+ unknown slot) or sin/cos coordinates."""

    encoding: Encoding
    region_names: tuple[str, ...] = ()  #: region-encoding order; the last is "unknown"

    @property
    def size(self) -> int:
        return len(self.region_names) if self.encoding == "region" else 4

    def region(self, name: str) -> np.ndarray:
        """One-hot of ``name``; a region the model does not know maps to "unknown"."""
        vector = np.zeros(self.size, np.float32)
        names = self.region_names[:-1]
        vector[names.index(name) if name in names else -1] = 1.0
        return vector

    def unknown(self) -> np.ndarray:
        vector = np.zeros(self.size, np.float32)
        vector[-1] = 1.0
        return vector

    @staticmethod
    def coordinates(lat: float, lon: float) -> np.ndarray:
        """``[sin lat, cos lat, sin lon, cos lon]`` with the angles in radians."""
        return coordinates(lat, lon)

    def for_tile(self, tile: _Tile, centre: tuple[float, float] | None) -> np.ndarray:
        """The vector of a benchmark tile (its region) or of a point in it (its coordinates)."""
        if self.encoding == "region":
            return self.region(tile.region)
        if centre is None:
            raise InputError(
                f"tile {tile.name} has no xmin/xmax/ymin/ymax attributes; coordinate encoding "
                "needs them"
            )
        return coordinates(*centre)

    def for_window(self, tile: _Tile, row: int, col: int, size: int) -> np.ndarray:
        """The vector of the ``size`` window at stored ``(row, col)`` of a benchmark tile."""
        if self.encoding == "region":
            return self.region(tile.region)
        return self.for_tile(tile, tile.window_centre(row, col, size))


class SceneCoordinates:
    """Coordinate encoding at scene pixels of an open rasterio dataset (any projected CRS)."""

    def __init__(self, dataset: Any) -> None:
        if dataset.crs is None:
            raise InputError(
                f"{dataset.name} has no CRS, so coordinate encoding cannot find latitudes; "
                "assign the CRS (e.g. gdal_edit.py -a_srs EPSG:32632) or use --region-vector"
            )
        self._crs = dataset.crs
        self._transform = dataset.transform

    def at(self, rows: Sequence[float], cols: Sequence[float]) -> np.ndarray:
        """``(n, 4)`` encodings of the pixel centres ``(rows[i], cols[i])`` in one reprojection."""
        from rasterio.transform import xy
        from rasterio.warp import transform as warp

        xs, ys = xy(self._transform, list(rows), list(cols), offset="center")
        lons, lats = warp(self._crs, "EPSG:4326", list(np.atleast_1d(xs)), list(np.atleast_1d(ys)))
        return np.stack([coordinates(lat, lon) for lat, lon in zip(lats, lons, strict=True)])
