"""Clouds inside the AOI, from each product's own cloud mask, on the output grid.

Scene-level cloud cover says how cloudy the whole 110 km tile was, which says little about one
valley; it is only the catalogue's pre-filter. Candidates are ranked by the cloud fraction
*inside the AOI*, read from the mask that comes with each product:

- ``MSK_CLASSI_B00.jp2`` (Level-1C from processing baseline 04.00): a 60 m raster with one band
  per class: 1 opaque clouds, 2 cirrus, 3 snow and ice. Cloud = opaque or cirrus.
- ``MSK_CLOUDS_B00.gml`` (Level-1C before 04.00): the same two classes as GML polygons in the
  tile's UTM CRS (``maskType`` OPAQUE or CIRRUS), rasterised here.
- ``SCL`` (Level-2A scene classification, 20 m): classes 3 (cloud shadow), 8 and 9 (cloud of
  medium and high probability) and 10 (thin cirrus).

:class:`CloudMask` reads any of them onto a window of the output grid, so the ranking (at 60 m,
:func:`aoi_cloud`) and the compositing (at 10 m) use one implementation.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from glaviz.acquire.grid import Grid
from glaviz.errors import InputError

MaskKind = Literal["classi", "gml", "scl"]

#: Bands of MSK_CLASSI_B00 that are cloud (opaque, cirrus); band 3 is snow and ice, not cloud.
CLASSI_CLOUD_BANDS = (1, 2)
#: SCL classes masked as cloud: shadow, medium and high probability, thin cirrus.
SCL_CLOUD_CLASSES = (3, 8, 9, 10)
#: maskType values of MSK_CLOUDS_B00.gml that are cloud.
GML_CLOUD_TYPES = frozenset({"OPAQUE", "CIRRUS"})
_EPSG_AT_END = re.compile(r"(\d{4,5})\s*$")

Polygon = dict[str, Any]


def mask_kind(href: str) -> MaskKind:
    """Which kind of cloud mask ``href`` names, from its file name."""
    name = href.rsplit("/", 1)[-1].upper()
    if name.endswith(".GML"):
        return "gml"
    if "SCL" in name:
        return "scl"
    return "classi"


def parse_gml_clouds(text: str | bytes, *, source: str) -> tuple[int | None, list[Polygon]]:
    """The EPSG code and the cloud polygons (GeoJSON, with holes) of an ``MSK_CLOUDS_B00.gml``.

    An empty mask (a clear tile) has no features and gives an empty list.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"cloud mask {source} is not readable GML ({exc})") from None
    epsg: int | None = None
    polygons: list[Polygon] = []
    for element in root.iter():
        srs = element.get("srsName")
        if epsg is None and srs and (match := _EPSG_AT_END.search(srs)):
            epsg = int(match.group(1))
        if _local(element.tag) != "MaskFeature":
            continue
        kinds = [
            (e.text or "").strip().upper() for e in element.iter() if _local(e.tag) == "maskType"
        ]
        if not GML_CLOUD_TYPES.intersection(kinds):
            continue
        for polygon in (e for e in element.iter() if _local(e.tag) == "Polygon"):
            rings = [_ring(e) for e in polygon.iter() if _local(e.tag) == "posList"]
            if rings and len(rings[0]) >= 3:
                polygons.append({"type": "Polygon", "coordinates": rings})
    return epsg, polygons


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ring(element: ET.Element) -> list[tuple[float, float]]:
    """A GML posList (``x y x y …``; a third value per point with srsDimension 3) → points."""
    values = [float(v) for v in (element.text or "").split()]
    step = int(element.get("srsDimension", "2"))
    return [(values[i], values[i + 1]) for i in range(0, len(values) - 1, step)]


class CloudMask:
    """One product's cloud mask, read onto windows of ``grid`` (True = cloud)."""

    def __init__(self, stack: ExitStack, path: Path, grid: Grid, *, kind: MaskKind) -> None:
        self.kind = kind
        self.grid = grid
        self._vrt: Any = None
        self._shapes: list[Polygon] = []
        if kind == "gml":
            self._shapes = _gml_in_grid(path, grid)
        else:
            import rasterio

            from glaviz.util.rasters import nearest_view

            src = stack.enter_context(rasterio.open(path))
            self._vrt = stack.enter_context(nearest_view(src, like=grid))

    def read(self, window: Any) -> np.ndarray:
        """The cloud flags of ``window`` (a rasterio Window of the grid) as a bool array."""
        shape = (int(window.height), int(window.width))
        if self.kind == "gml":
            if not self._shapes:
                return np.zeros(shape, dtype=bool)
            from rasterio.features import rasterize
            from rasterio.windows import transform as window_transform

            burned = rasterize(
                self._shapes,
                out_shape=shape,
                transform=window_transform(window, self.grid.transform),
                fill=0,
                default_value=1,
                dtype="uint8",
            )
            return burned.astype(bool)
        if self.kind == "scl":
            return np.isin(self._vrt.read(1, window=window), SCL_CLOUD_CLASSES)
        bands = [b for b in CLASSI_CLOUD_BANDS if b <= self._vrt.count]
        return np.any(self._vrt.read(bands, window=window) > 0, axis=0)


def _gml_in_grid(path: Path, grid: Grid) -> list[Polygon]:
    """The cloud polygons of a GML mask, in the grid's CRS."""
    from rasterio.warp import transform_geom

    epsg, polygons = parse_gml_clouds(Path(path).read_bytes(), source=str(path))
    if not polygons:
        return []
    if epsg is None:
        raise InputError(f"cloud mask {path} names no CRS (srsName); it cannot be placed")
    return [transform_geom(f"EPSG:{epsg}", grid.crs, p) for p in polygons]


def footprint_mask(
    footprints: Iterable[Mapping[str, Any]], grid: Grid, *, all_touched: bool = False
) -> np.ndarray:
    """Pixels of ``grid`` inside the union of the lon/lat ``footprints`` (GeoJSON); with
    ``all_touched``, every pixel they touch (so that a polygon narrower than a pixel keeps some)."""
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom

    shapes = [transform_geom("EPSG:4326", grid.crs, dict(f)) for f in footprints]
    if not shapes:
        return np.zeros((grid.height, grid.width), dtype=bool)
    burned = rasterize(
        shapes,
        out_shape=(grid.height, grid.width),
        transform=grid.transform,
        dtype="uint8",
        all_touched=all_touched,
    )
    return burned.astype(bool)


@dataclass(frozen=True)
class AoiCloud:
    """Cloud and coverage of one date inside the AOI (fractions 0-1).

    ``cloud_fraction`` is over the covered part of the AOI; ``source`` says where it came from:
    ``"mask"``, or ``"scene"`` when no product of the date has a mask (the scene cloud cover).
    """

    cloud_fraction: float
    coverage: float
    source: str


def aoi_cloud(
    footprints: Sequence[Mapping[str, Any]],
    masks: Sequence[CloudMask | None],
    grid: Grid,
    *,
    scene_cloud_pct: float | None = None,
    area: np.ndarray | None = None,
) -> AoiCloud:
    """Cloud fraction and coverage of the AOI ``grid`` for the granules of one date.

    ``masks[i]`` belongs to ``footprints[i]`` (None: that product has no mask). A pixel is
    covered when any footprint holds it, and cloudy when a mask of a granule covering it says so.
    ``area`` (pixels of the AOI polygon) limits both to the AOI itself; None is the whole grid.
    """
    from rasterio.windows import Window

    region = np.ones((grid.height, grid.width), dtype=bool) if area is None else area
    covered = np.zeros_like(region)
    cloudy = np.zeros_like(covered)
    whole = Window(0, 0, grid.width, grid.height)
    for footprint, mask in zip(footprints, masks, strict=True):
        inside = footprint_mask([footprint], grid) & region
        covered |= inside
        if mask is not None:
            cloudy |= inside & mask.read(whole)
    n_covered = int(covered.sum())
    coverage = n_covered / max(int(region.sum()), 1)
    if all(m is None for m in masks):
        fraction = (scene_cloud_pct or 0.0) / 100.0 if n_covered else 1.0
        return AoiCloud(cloud_fraction=fraction, coverage=coverage, source="scene")
    fraction = int(cloudy.sum()) / n_covered if n_covered else 1.0
    return AoiCloud(cloud_fraction=fraction, coverage=coverage, source="mask")
