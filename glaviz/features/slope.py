"""Terrain slope in degrees with Horn's method, the algorithm of GDAL's ``gdaldem slope``.

The model was trained on slope rasters made with GDAL, so glaviz computes slope the same way:
Horn's 3 × 3 finite differences (Horn 1981, "Hill shading and the reflectance map"),
``atan(hypot(dz/dx, dz/dy))`` in degrees. Two choices make it safe on real scenes:

* Horizontal distances are in metres for every CRS. Projected CRSs scale by their linear unit
  (feet are converted); geographic CRSs get metres per degree from the CRS's ellipsoid at each
  row's latitude, because one degree of longitude shrinks with ``cos(latitude)``. ``gdaldem``
  before GDAL 3.11 only knows one global ``-s`` factor, which is exact only at the equator.
* Edges and holes follow ``gdaldem slope -compute_edges``: cells beyond the raster edge are
  extrapolated linearly, nodata neighbours take the centre cell's value. Without this the scene
  border would be NaN, and a NaN fed to the network spreads through every convolution of the
  patch it lands in.

Slope is computed on the DEM's own grid, before any warping, because resampling first would
smooth the elevations and flatten the gradients. :func:`write_slope` streams a DEM into a slope
GeoTIFF window by window with a one-pixel halo, so memory does not grow with the DEM.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.errors import InputError
from glaviz.util.rasters import linear_unit, read_as_float, windows

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.io import DatasetReader
    from rasterio.windows import Window

#: Output tiles of the slope scratch file and of the stack (GDAL's usual tile size).
BLOCK = 256


def horn_slope(
    padded: np.ndarray,
    *,
    xres: float | np.ndarray,
    yres: float | np.ndarray,
    edges: tuple[bool, bool, bool, bool] = (True, True, True, True),
) -> np.ndarray:
    """Slope in degrees of the interior of ``padded``, a DEM block with a one-pixel halo.

    ``padded`` has shape ``(H + 2, W + 2)``; NaN marks missing cells (nodata, or outside the
    raster). ``xres`` and ``yres`` are the pixel sizes in the elevation unit (metres), scalars or
    one value per output row (shape ``(H,)``) for geographic grids. ``edges`` says which halo
    sides (top, bottom, left, right) lie outside the raster.

    Edge and nodata handling is that of ``gdaldem slope -compute_edges``: a halo side outside
    the raster is extrapolated linearly (``2 * edge - next``), except that the first and last
    raster rows repeat their edge columns instead; any neighbour still missing takes the centre
    value; a missing centre gives NaN. Returns float32 ``(H, W)``.
    """
    z = np.array(padded, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 3 or z.shape[1] < 3:
        raise ValueError(f"expected a 2-D block with a one-pixel halo, got shape {z.shape}")
    top, bottom, left, right = edges
    h, w = z.shape[0] - 2, z.shape[1] - 2
    # GDAL extrapolates only when the raster has at least two cells in that direction.
    if w >= 2:
        if left:
            z[:, 0] = 2.0 * z[:, 1] - z[:, 2]
        if right:
            z[:, -1] = 2.0 * z[:, -2] - z[:, -3]
    if h >= 2:
        if top:
            z[0] = 2.0 * z[1] - z[2]
        if bottom:
            z[-1] = 2.0 * z[-2] - z[-3]

    xr = np.abs(np.asarray(xres, dtype=np.float64))
    yr = np.abs(np.asarray(yres, dtype=np.float64))
    xr = np.broadcast_to(xr.reshape(-1, 1) if xr.ndim else xr, (h, 1))
    yr = np.broadcast_to(yr.reshape(-1, 1) if yr.ndim else yr, (h, 1))
    out = _horn(z, xr, yr)
    # The first and last raster rows repeat their edge columns (GDAL clamps the column index
    # there rather than extrapolating).
    for row, is_edge in ((0, top), (h - 1, bottom)):
        if is_edge and (left or right) and h >= 2:
            strip = z[row : row + 3].copy()
            if left:
                strip[:, 0] = strip[:, 1]
            if right:
                strip[:, -1] = strip[:, -2]
            out[row] = _horn(strip, xr[row : row + 1], yr[row : row + 1])[0]
    return out.astype(np.float32)


def horn_interior(
    z: np.ndarray, xr: float | np.ndarray, yr: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Horn's 3 × 3 gradient on the interior of ``z`` (a one-cell border around the cells
    wanted): ``(dz/d east, dz/d north)``, with ``xr``/``yr`` the cell sizes (scalars or per-row
    arrays). Missing neighbours take the centre value."""
    h, w = z.shape[0] - 2, z.shape[1] - 2
    centre = z[1:-1, 1:-1]

    def cell(dr: int, dc: int) -> np.ndarray:
        v = z[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        return np.where(np.isnan(v), centre, v)

    a, b, c = cell(-1, -1), cell(-1, 0), cell(-1, 1)
    d, f = cell(0, -1), cell(0, 1)
    g, hh, i = cell(1, -1), cell(1, 0), cell(1, 1)
    east = ((c + 2.0 * f + i) - (a + 2.0 * d + g)) / (8.0 * xr)
    north = ((a + 2.0 * b + c) - (g + 2.0 * hh + i)) / (8.0 * yr)
    return east, north


def _horn(z: np.ndarray, xr: np.ndarray, yr: np.ndarray) -> np.ndarray:
    """Horn slope in degrees on the interior of ``z``; NaN where the centre is NaN."""
    east, north = horn_interior(z, xr, yr)
    slope = np.degrees(np.arctan(np.hypot(east, north)))
    return np.where(np.isnan(z[1:-1, 1:-1]), np.nan, slope)


def slope_degrees(
    dem: np.ndarray, *, xres: float | np.ndarray, yres: float | np.ndarray
) -> np.ndarray:
    """Slope in degrees of a whole in-memory DEM (NaN = nodata); see :func:`horn_slope`."""
    padded = np.pad(np.asarray(dem, dtype=np.float64), 1, constant_values=np.nan)
    return horn_slope(padded, xres=xres, yres=yres)


def metres_per_degree(
    latitude: np.ndarray, *, a: float, inverse_flattening: float
) -> tuple[np.ndarray, np.ndarray]:
    """Metres per degree of longitude and of latitude at ``latitude`` (degrees) on an ellipsoid.

    Uses the prime-vertical radius ``N`` (east-west: ``N cos φ``) and the meridional radius
    ``M`` (north-south), so the result is right at any latitude, not just at the equator.
    """
    f = 1.0 / inverse_flattening if inverse_flattening else 0.0
    e2 = f * (2.0 - f)
    phi = np.radians(np.asarray(latitude, dtype=np.float64))
    s2 = np.sin(phi) ** 2
    n = a / np.sqrt(1.0 - e2 * s2)
    m = a * (1.0 - e2) / (1.0 - e2 * s2) ** 1.5
    per_rad = math.pi / 180.0
    return n * np.cos(phi) * per_rad, m * per_rad


def pixel_size_metres(
    crs: CRS, transform: Affine, rows: np.ndarray, *, name: str = "the DEM"
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Pixel width and height in metres for the given (0-based, absolute) rows of a grid.

    Projected CRSs give constants (scaled by the CRS's linear unit); geographic CRSs give one
    value per row from the ellipsoid at the row centre's latitude.
    """
    if not transform.is_rectilinear:
        raise InputError(
            f"{name} has a rotated geotransform ({tuple(transform)[:6]}); slope needs a north-up "
            "grid: warp it first (gdalwarp) or pass --slope"
        )
    if crs.is_geographic:
        from pyproj import CRS as ProjCRS

        ellipsoid = ProjCRS.from_user_input(crs.to_wkt()).ellipsoid
        if ellipsoid is None:
            raise InputError(f"{name} has a geographic CRS without an ellipsoid ({crs})")
        lat = transform.f + transform.e * (np.asarray(rows, dtype=np.float64) + 0.5)
        per_lon, per_lat = metres_per_degree(
            lat, a=ellipsoid.semi_major_metre, inverse_flattening=ellipsoid.inverse_flattening
        )
        return abs(transform.a) * per_lon, abs(transform.e) * per_lat
    unit = linear_unit(crs)
    if unit is None:
        raise InputError(
            f"{name} has a CRS without a known linear unit ({crs}); reproject it to a metric "
            "CRS or pass --slope"
        )
    _, factor = unit
    return abs(transform.a) * factor, abs(transform.e) * factor


def write_slope(
    src: DatasetReader,
    *,
    path: str | Path,
    window: Window | None = None,
    band: int = 1,
    window_size: int = 1024,
    with_elevation: bool = False,
    on_window: Callable[[], Any] | None = None,
) -> Path:
    """Stream the slope of ``src`` (band ``band``, optionally only ``window``) into a GeoTIFF.

    The output covers ``window`` on the DEM's own grid. With ``with_elevation`` it holds the
    elevation (NaN for nodata) as band 1 and the slope as band 2, so that a later warp handles
    both with one set of coordinate transforms. Each processing window is read with a
    one-pixel halo from the DEM itself, so window seams are invisible and cells beyond the crop
    still count as neighbours; only the true raster edge uses the ``-compute_edges`` rule.
    """
    import rasterio
    from rasterio.windows import Window

    full = Window(0, 0, src.width, src.height)
    window = full if window is None else window
    col0, row0 = int(window.col_off), int(window.row_off)
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 2 if with_elevation else 1,
        "width": int(window.width),
        "height": int(window.height),
        "crs": src.crs,
        "transform": src.window_transform(window),
        "nodata": float("nan"),
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        # Scratch file: fast compression is enough, it only saves disk.
        "compress": "deflate",
        "zlevel": 1,
        "predictor": 3,
        "bigtiff": "if_safer",
    }
    path = Path(path)
    with rasterio.open(path, "w", **profile) as dst:
        for win in windows(window, window_size):
            r0, c0 = int(win.row_off), int(win.col_off)
            h, w = int(win.height), int(win.width)
            # Halo window clipped to the raster; what falls outside stays NaN.
            hr0, hc0 = max(r0 - 1, 0), max(c0 - 1, 0)
            hr1, hc1 = min(r0 + h + 1, src.height), min(c0 + w + 1, src.width)
            block = np.full((h + 2, w + 2), np.nan, dtype=np.float32)
            block[hr0 - r0 + 1 : hr1 - r0 + 1, hc0 - c0 + 1 : hc1 - c0 + 1] = read_as_float(
                src, band, Window(hc0, hr0, hc1 - hc0, hr1 - hr0)
            )
            xres, yres = pixel_size_metres(
                src.crs, src.transform, np.arange(r0, r0 + h), name=str(src.name)
            )
            edges = (r0 == 0, r0 + h == src.height, c0 == 0, c0 + w == src.width)
            out = horn_slope(block, xres=xres, yres=yres, edges=edges)
            target = Window(c0 - col0, r0 - row0, w, h)
            if with_elevation:
                dst.write(np.stack([block[1:-1, 1:-1], out]), window=target)
            else:
                dst.write(out, 1, window=target)
            if on_window is not None:
                on_window()
    return path
