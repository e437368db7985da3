"""Per-glacier attributes as RGI 7 and OGGM compute them, from the label raster and the DEM.

* ``area_km2``: geodesic area of the polygon on the WGS 84 ellipsoid (pyproj.Geod), so it does
  not depend on the map projection.
* ``cenlon``/``cenlat``: a point guaranteed inside the polygon (``representative_point``), as
  RGI 7 does; a centroid can fall outside a curved glacier.
* ``zmin_m``/``zmax_m``/``zmed_m``/``zmean_m``: of the DEM pixels of the glacier.
* ``slope_deg``: the mean of the pixel slopes (Horn's gradient, as gdaldem).
* ``aspect_deg``: the direction the *mean gradient* faces (downhill, clockwise from north), and
  ``aspect_sec`` its 45° sector, 1 = north (337.5°–22.5°) … 8 = north-west, as RGI.
* ``termlon``/``termlat``: the lowest pixel on the glacier's exterior outline (not on a
  nunatak's edge, not on an ice divide).
* hypsometry: the share of the glacier's area in each ``band_m`` elevation band, in per mille,
  rounded so that each glacier's bands sum to exactly 1000.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from glaviz.features.slope import horn_interior
from glaviz.inventory.cleanup import BACKGROUND_STRUCTURE, ICE_STRUCTURE


def horn_gradient(dem: np.ndarray, *, xres: float, yres: float) -> tuple[np.ndarray, np.ndarray]:
    """Horn's 3 × 3 gradient: (dz/d east, dz/d north). Missing neighbours take the centre value.

    Cells beyond the array repeat the edge, which is exact for planes up to the outermost row.
    """
    z = np.pad(np.asarray(dem, dtype=np.float64), 1, mode="edge")
    h, w = dem.shape
    east, north = horn_interior(z, float(xres), float(yres))
    # Edge repetition halves the difference across the array's outer rows; correct it there.
    if w >= 2:
        east[:, 0] *= 2
        east[:, -1] *= 2
    if h >= 2:
        north[0] *= 2
        north[-1] *= 2
    return east, north


def aspect_sector(aspect_deg: float) -> int:
    """RGI's eight sectors: 1 = N (337.5°–22.5°), 2 = NE, …, 8 = NW; 0 when unknown."""
    if not np.isfinite(aspect_deg):
        return 0
    return int(((aspect_deg + 22.5) % 360.0) // 45.0) + 1


def hypsometry(z: np.ndarray, band_m: float) -> list[tuple[float, int]]:
    """(band bottom, per mille) of finite elevations ``z``; per milles sum to 1000."""
    z = z[np.isfinite(z)]
    if z.size == 0:
        return []
    bands = np.floor(z / band_m).astype(np.int64)
    lo = int(bands.min())
    counts = np.bincount(bands - lo)
    exact = counts * 1000.0 / counts.sum()
    permille = np.floor(exact).astype(np.int64)
    short = 1000 - int(permille.sum())
    if short:
        order = np.argsort(-(exact - permille), kind="stable")[:short]
        permille[order] += 1
    return [((lo + k) * band_m, int(p)) for k, p in enumerate(permille) if counts[k] > 0]


def exterior_edge(complex_mask: np.ndarray) -> np.ndarray:
    """Ice pixels that touch the background outside the complex (not a nunatak, not a divide)."""
    solid = ndimage.binary_fill_holes(complex_mask, structure=BACKGROUND_STRUCTURE)
    outside = np.pad(~solid, 1, constant_values=True)
    touching = ndimage.binary_dilation(outside, structure=ICE_STRUCTURE)[1:-1, 1:-1]
    return complex_mask & touching


def raster_attributes(
    labels: np.ndarray,
    n: int,
    *,
    dem: np.ndarray,
    xres: float,
    yres: float,
    transform: Any,
    invalid: np.ndarray,
    scene_edge: np.ndarray,
    band_m: float,
) -> list[dict[str, Any]]:
    """Attributes of glaciers ``1..n`` of one complex crop that come from pixels.

    ``scene_edge`` marks crop pixels that lie on the scene's edge or next to where the scene
    ends; ``invalid`` marks nodata pixels of the outlines. Terminus coordinates are in the
    working CRS (``term_x``, ``term_y``); the caller converts them to longitude and latitude.
    """
    east, north = horn_gradient(dem, xres=xres, yres=yres)
    slope = np.degrees(np.arctan(np.hypot(east, north)))
    edge = exterior_edge(labels > 0)
    near_invalid = ndimage.binary_dilation(invalid, structure=ICE_STRUCTURE)
    out = []
    for g in range(1, n + 1):
        pix = labels == g
        z = dem[pix]
        ok = np.isfinite(z)
        zs = z[ok]
        mean_e = float(np.nanmean(east[pix])) if ok.any() else math.nan
        mean_n = float(np.nanmean(north[pix])) if ok.any() else math.nan
        if ok.any() and (mean_e != 0.0 or mean_n != 0.0):
            aspect = math.degrees(math.atan2(-mean_e, -mean_n)) % 360.0
        else:
            aspect = math.nan
        term_x = term_y = math.nan
        boundary = pix & edge & np.isfinite(dem)
        if boundary.any():
            rr, cc = np.nonzero(boundary)
            k = int(np.argmin(dem[rr, cc]))
            term_x, term_y = transform * (cc[k] + 0.5, rr[k] + 0.5)
        out.append(
            {
                "zmin_m": float(zs.min()) if zs.size else math.nan,
                "zmax_m": float(zs.max()) if zs.size else math.nan,
                "zmed_m": float(np.median(zs)) if zs.size else math.nan,
                "zmean_m": float(zs.mean()) if zs.size else math.nan,
                "slope_deg": float(np.nanmean(slope[pix])) if zs.size else math.nan,
                "aspect_deg": aspect,
                "aspect_sec": aspect_sector(aspect),
                "dem_valid_frac": float(ok.mean()) if z.size else 0.0,
                "touches_scene_edge": bool((pix & scene_edge).any()),
                "touches_nodata": bool((pix & near_invalid).any()),
                "term_x": float(term_x),
                "term_y": float(term_y),
                "pixels": int(pix.sum()),
                "hypsometry": hypsometry(zs, band_m),
            }
        )
    return out


def label_polygons(labels: np.ndarray, transform: Any) -> dict[int, Any]:
    """One (multi)polygon per label, traced along pixel edges with deploy's connectivity (4)."""
    from rasterio import features
    from shapely import union_all
    from shapely.geometry import shape

    parts: dict[int, list[Any]] = {}
    for geom, value in features.shapes(
        labels.astype(np.int32), mask=labels > 0, connectivity=4, transform=transform
    ):
        parts.setdefault(int(value), []).append(shape(geom))
    return {k: (v[0] if len(v) == 1 else union_all(v)) for k, v in parts.items()}


def divide_lines(
    polygons: dict[int, Any], pairs: list[tuple[int, int]]
) -> list[tuple[int, int, Any]]:
    """The shared boundary of each pair of adjacent glaciers, as merged lines."""
    from shapely import line_merge
    from shapely.geometry import LineString, MultiLineString

    out = []
    for a, b in pairs:
        shared = polygons[a].boundary.intersection(polygons[b].boundary)
        lines = [g for g in getattr(shared, "geoms", [shared]) if isinstance(g, LineString)]
        lines += [
            part
            for g in getattr(shared, "geoms", [shared])
            if isinstance(g, MultiLineString)
            for part in g.geoms
        ]
        if not lines:
            continue
        merged = line_merge(MultiLineString(lines))
        out.append((a, b, merged))
    return out


def geodesic_area_km2(geometries_lonlat: Any) -> np.ndarray:
    """Areas on the WGS 84 ellipsoid of polygons given in longitude and latitude."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    return np.array(
        [abs(geod.geometry_area_perimeter(g)[0]) / 1e6 for g in geometries_lonlat],
        dtype=np.float64,
    )
