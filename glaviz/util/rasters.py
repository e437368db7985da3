"""Small raster helpers shared by features, evaluation and inventory: one home for each.

Opening a raster, refusing one that cannot be placed on the ground, comparing grids and bounds,
naming CRSs and bounds in messages, reading bands as float32 with NaN, warping one raster onto
another's grid, and cutting a grid into processing windows. There is one implementation of
each, so that features, evaluation and inventory answer "same grid?" and "do these overlap?"
alike and word their messages alike.

rasterio is imported inside the functions, so importing this module stays cheap for the
commands that load only their configuration. A raster that cannot be used is an
:class:`~glaviz.errors.InputError` naming the file and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from glaviz.errors import InputError

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.io import DatasetReader
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

__all__ = [
    "GRID_TOLERANCE",
    "Bounds",
    "GridLike",
    "bounds_overlap",
    "count_windows",
    "crs_name",
    "format_bounds",
    "intersects",
    "linear_unit",
    "nearest_view",
    "open_raster",
    "read_as_float",
    "reproject_bounds",
    "require_crs",
    "require_north_up",
    "same_grid",
    "warped_view",
    "windows",
]

#: ``(left, bottom, right, top)``, as rasterio's ``bounds`` and ``transform_bounds`` give them.
Bounds = tuple[float, float, float, float]

#: Largest difference between two transforms' coefficients, as a fraction of the smaller pixel
#: side, for which two rasters count as on the same grid; see :func:`same_grid`.
GRID_TOLERANCE = 1e-9

#: Warp "tolerance" that makes GDAL's approximate transformer exact (rasterio's WarpedVRT
#: fails with 0).
_EXACT_WARP = 1e-9


class GridLike(Protocol):
    """What :func:`same_grid` and :func:`warped_view` need of a grid: a rasterio dataset, or
    any object with the same four attributes (such as the inventory's working grid)."""

    @property
    def crs(self) -> Any: ...

    @property
    def transform(self) -> Affine: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


# ----------------------------------------------------------------------------- messages


def crs_name(crs: Any) -> str:
    """``EPSG:<code>`` when the CRS has one, else its own text; ``no CRS`` for None.

    Messages name CRSs this way so that a user can paste the name into ``gdal_edit.py -a_srs``
    or ``ogr2ogr -a_srs``; a WKT is shown only when there is no code to show.
    """
    if crs is None:
        return "no CRS"
    try:
        epsg = crs.to_epsg()
    except Exception:  # pyproj and rasterio raise different types for odd CRSs
        epsg = None
    return f"EPSG:{epsg}" if epsg else str(crs)


def format_bounds(bounds: Sequence[float]) -> str:
    """Bounds for a message, e.g. ``(400000, 5099600, 400500, 5100000)``.

    Ten significant digits: metre-level UTM northings have seven before the decimal point, and
    two bounds that differ only in their last metres must not print the same.
    """
    return "(" + ", ".join(f"{float(v):.10g}" for v in bounds) + ")"


# ----------------------------------------------------------------------------- opening


def open_raster(
    path: Path,
    what: str,
    *,
    missing: str | None = None,
    hint: str = "",
) -> DatasetReader:
    """Open ``path`` with rasterio, or raise one :class:`InputError` line that names it.

    ``what`` names the raster in messages (``DEM``, ``optical raster``, ``--truth raster``).
    ``missing`` is the advice after "``{what} {path}`` does not exist;" (for instance which
    option to check); None when the caller has already made sure the file exists. ``hint`` is
    appended to the message for a file GDAL cannot read. The caller closes the dataset.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    if missing is not None and not path.exists():
        raise InputError(f"{what} {path} does not exist; {missing}")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"cannot read {what} {path}: {exc}{hint}") from None


def require_crs(src: DatasetReader, path: Path, what: str) -> None:
    """Refuse a raster without a CRS: nothing can be warped onto it, or it onto anything.

    The message gives the fix, since a missing CRS is almost always a GeoTIFF whose CRS was
    lost on export rather than a raster that has none.
    """
    if src.crs is None:
        raise InputError(
            f"{what} {path} has no CRS, so glaviz cannot tell where on Earth it lies; assign "
            f"the right one, e.g. gdal_edit.py -a_srs EPSG:<code> {path}"
        )


def require_north_up(src: DatasetReader, path: Path, what: str) -> None:
    """Refuse a rotated geotransform: windows, slopes and pixel areas assume north-up rows."""
    if not src.transform.is_rectilinear:
        raise InputError(
            f"{what} {path} has a rotated geotransform; warp it to a north-up grid first (gdalwarp)"
        )


# ----------------------------------------------------------------------------- CRS and bounds


def linear_unit(crs: Any) -> tuple[str, float] | None:
    """The CRS's linear unit as ``(name, metres per unit)``; None when it has none.

    Geographic CRSs and CRSs with an unknown unit have none; what to do then (assume metres,
    or refuse) is the caller's choice.
    """
    try:
        name, factor = crs.linear_units_factor
    except Exception:  # rasterio raises CRSError for CRSs without a linear unit
        return None
    return str(name), float(factor)


def intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two bounds in the same CRS share an area (touching edges do not count)."""
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def reproject_bounds(bounds: Sequence[float], src_crs: Any, dst_crs: Any) -> Bounds | None:
    """``bounds`` in ``src_crs`` expressed in ``dst_crs``, or None where they cannot be.

    The edges are densified (21 points each) so that curved edges in the target CRS are
    covered. Bounds outside the target CRS's domain make GDAL raise or return infinities; both
    mean "not expressible there", and callers then compare in the other CRS instead.
    """
    from rasterio.errors import RasterioError
    from rasterio.warp import transform_bounds

    try:
        out = transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21)
    except (RasterioError, ValueError):
        return None
    if not all(math.isfinite(v) for v in out):
        return None
    left, bottom, right, top = out
    return left, bottom, right, top


def format_bounds_in(bounds: Sequence[float], src_crs: Any, dst_crs: Any) -> str:
    """``bounds`` (in ``src_crs``) for a message in ``dst_crs``, where the other side of a
    "does not overlap" is: :func:`format_bounds`, or "(not transformable)"."""
    moved = reproject_bounds(bounds, src_crs, dst_crs)
    return format_bounds(moved) if moved is not None else "(not transformable)"


def bounds_overlap(
    bounds: Sequence[float], crs: Any, other_bounds: Sequence[float], other_crs: Any
) -> bool:
    """Whether two rasters' bounds, each in its own CRS, share an area.

    They are compared in ``other_crs``; when ``bounds`` cannot be expressed there (outside its
    domain, e.g. a polar scene against a UTM zone), in ``crs``. Neither way: no overlap.
    """
    moved = reproject_bounds(bounds, crs, other_crs)
    if moved is not None:
        return intersects(moved, other_bounds)
    back = reproject_bounds(other_bounds, other_crs, crs)
    return back is not None and intersects(bounds, back)


# ----------------------------------------------------------------------------- grids


def _pixel_side(transform: Affine) -> float:
    """The shorter side of a pixel in CRS units (the column and row vectors' lengths, which
    are the pixel width and height of north-up and rotated grids alike)."""
    return min(math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e))


def same_grid(a: GridLike, b: GridLike) -> bool:
    """Whether ``a`` and ``b`` have the same CRS, size and transform, so that one can be read
    pixel for pixel in place of the other instead of being warped.

    Transforms count as equal when each coefficient differs by at most :data:`GRID_TOLERANCE`
    (a billionth) of the smaller pixel side of the two grids.

    Relative to the pixel, because the coefficients are in CRS units (metres, feet, degrees)
    and an absolute tolerance would mean something else in each. A billionth, because the same
    grid written by two tools differs only in rounding: float64 carries about 16 significant
    digits, so even an origin half a million pixels from zero (a UTM northing at 10 m) rounds
    by about 1e-10 pixel, while grids that really differ are apart by a visible fraction of a
    pixel. Accepting a difference this small moves no pixel of a scene 100 000 pixels wide by
    more than 1e-4 pixel. The smaller pixel side of the two keeps the test symmetric and
    strict.
    """
    if a.crs != b.crs or a.width != b.width or a.height != b.height:
        return False
    tolerance = GRID_TOLERANCE * min(_pixel_side(a.transform), _pixel_side(b.transform))
    # Not Affine.almost_equals: it replaces a zero precision by its own 1e-5.
    return all(abs(x - y) <= tolerance for x, y in zip(a.transform, b.transform, strict=True))


def read_as_float(src: Any, indexes: int | list[int], window: Window) -> np.ndarray:
    """Read bands as float32 with every nodata value, mask and alpha turned into NaN.

    ``src`` is a dataset or a :func:`warped_view` of one.
    """
    data = src.read(indexes, window=window, masked=True)
    return np.ma.filled(data.astype(np.float32), np.nan)


def warped_view(src: DatasetReader, *, like: GridLike) -> WarpedVRT:
    """A virtual, bilinear warp of ``src`` onto the grid of ``like``, read window by window.

    Bilinear, because every raster warped this way (DEM, slope, SAR, thermal) is continuous.
    GDAL warps only the blocks a read touches, honouring the source's nodata value, mask or
    alpha band, and fills what ``src`` does not cover with NaN. Coordinate transforms are exact
    (GDAL's default approximation, 1/8 source pixel along each scanline, makes values depend
    on where the windows are cut; exact transforms make the result independent of them).
    """
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    return WarpedVRT(
        src,
        crs=like.crs,
        transform=like.transform,
        width=like.width,
        height=like.height,
        resampling=Resampling.bilinear,
        tolerance=_EXACT_WARP,
        nodata=np.nan,
        dtype="float32",
    )


def nearest_view(src: DatasetReader, *, like: GridLike) -> WarpedVRT:
    """A virtual, nearest-neighbour warp of ``src`` onto the grid of ``like``, in its own data
    type: for masks and classes, whose values must not be averaged (:func:`warped_view` is the
    bilinear one for continuous rasters)."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    return WarpedVRT(
        src,
        crs=like.crs,
        transform=like.transform,
        width=like.width,
        height=like.height,
        resampling=Resampling.nearest,
    )


def windows(window: Window, size: int) -> Iterator[Window]:
    """``window`` cut into windows of at most ``size`` × ``size`` pixels, row by row.

    With ``size`` a multiple of the output's tile size, every window but the last of a row or
    column covers whole tiles, so each tile is written once.
    """
    from rasterio.windows import Window

    for row in range(0, int(window.height), size):
        for col in range(0, int(window.width), size):
            yield Window(
                window.col_off + col,
                window.row_off + row,
                min(size, int(window.width) - col),
                min(size, int(window.height) - row),
            )


def count_windows(window: Window, size: int) -> int:
    """How many windows :func:`windows` yields (for progress bars)."""
    return math.ceil(window.height / size) * math.ceil(window.width / size)
