"""The working grid of a change run, and every date read onto it.

All dates are compared pixel by pixel on the grid of the earliest date, so that the earliest
outline keeps its own pixels. A geographic grid is replaced by the local UTM zone at square
pixels (as glaviz inventory does), because perimeters and buffers are in metres; a batch date of
several scenes gets the union of their extents on the first scene's pixel lattice. Other dates
are reprojected with nearest neighbour, which keeps the classes (ice, no ice, unobserved)
intact. Whatever a date does not cover, or covers with nodata, is unobserved at that date:
nodata is never read as "no ice".

Memory per date at full size: an ice and a validity mask (one byte per pixel each), a
low-confidence mask when there is a confidence raster, and later an int32 label raster. The
float confidence is read one date at a time and reduced to its mask at once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from glaviz.change.inputs import DateSource
from glaviz.errors import InputError
from glaviz.inventory.grid import OUTLINE_NODATA, Grid, utm_crs
from glaviz.util.rasters import (
    bounds_overlap,
    crs_name,
    format_bounds,
    format_bounds_in,
    open_raster,
    reproject_bounds,
    require_crs,
    require_north_up,
    same_grid,
)

log = logging.getLogger("glaviz.change")

#: Calibrated confidence below this is "the model was unsure" (the confidence method).
LOW_CONFIDENCE = 0.5
#: Column names tried for the region of a reference or inventory glacier (RGI 7, RGI 6, generic).
REGION_CANDIDATES = ("o1region", "O1Region", "region")


@dataclass
class UnitTable:
    """What is known of each label ``k`` (at index ``k - 1``) of one date."""

    ids: list[str] = field(default_factory=list)
    refs: list[str | None] = field(default_factory=list)
    complexes: list[str | None] = field(default_factory=list)
    regions: list[str | None] = field(default_factory=list)
    #: The column the reference ids came from (e.g. RGIId), reported under that name.
    ref_field: str | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class DateMap:
    """One date on the working grid."""

    source: DateSource
    ice: np.ndarray  #: bool
    valid: np.ndarray  #: bool: observed (not nodata, inside the input)
    low: np.ndarray | None  #: bool: confidence below 0.5, or None without a confidence raster
    labels: np.ndarray | None = None  #: int32 glacier labels once labelled (0 = none)
    units: UnitTable | None = None
    calibrated: bool | None = None

    @property
    def date(self) -> Any:
        return self.source.date


# ----------------------------------------------------------------------------- the grid


def working_grid(source: DateSource) -> Grid:
    """The grid of the earliest date: its raster's, or the union of its scenes' extents."""
    if source.rasters:
        return _raster_grid([p.outlines for p in source.rasters])
    if source.inventory_outlines is not None:
        return _raster_grid([source.inventory_outlines])
    return _inventory_grid(source)


def _raster_grid(paths: list[Path]) -> Grid:
    import rasterio

    with open_raster(paths[0], "outlines") as src:
        require_crs(src, paths[0], "outlines")
        require_north_up(src, paths[0], "outlines")
        crs, transform, width, height = src.crs, src.transform, src.width, src.height
        if crs.is_geographic:
            crs, transform, width, height = _utm_grid(src)
    base = Grid(crs, transform, width, height)
    if len(paths) == 1:
        return base
    left, bottom, right, top = base.bounds
    for path in paths[1:]:
        with rasterio.open(path) as src:
            moved = reproject_bounds(src.bounds, src.crs, crs)
        if moved is None:
            continue
        left, bottom = min(left, moved[0]), min(bottom, moved[1])
        right, top = max(right, moved[2]), max(top, moved[3])
    return _snapped(base, (left, bottom, right, top))


def _snapped(base: Grid, bounds: tuple[float, float, float, float]) -> Grid:
    """A grid covering ``bounds`` on the pixel lattice of ``base``."""
    res_x, res_y = base.transform.a, -base.transform.e
    x0, y0 = base.transform.c, base.transform.f
    left = x0 + math.floor((bounds[0] - x0) / res_x) * res_x
    top = y0 - math.floor((y0 - bounds[3]) / res_y) * res_y
    width = math.ceil((bounds[2] - left) / res_x - 1e-9)
    height = math.ceil((top - bounds[1]) / res_y - 1e-9)
    return Grid(base.crs, Affine(res_x, 0, left, 0, -res_y, top), width, height)


def _utm_grid(src: Any) -> tuple[Any, Affine, int, int]:
    """The local UTM zone at square pixels of about the source's size on the ground."""
    from rasterio.warp import calculate_default_transform

    left, bottom, right, top = src.bounds
    dst = utm_crs((left + right) / 2, (bottom + top) / 2)
    transform, _, _ = calculate_default_transform(src.crs, dst, src.width, src.height, *src.bounds)
    res = math.sqrt(abs(transform.a * transform.e))
    transform, width, height = calculate_default_transform(
        src.crs, dst, src.width, src.height, *src.bounds, resolution=res
    )
    log.info("earliest outlines are geographic; working in %s at %.1f m", dst, res)
    return dst, transform, width, height


def _inventory_grid(source: DateSource) -> Grid:
    """An inventory without its outlines: its glaciers' extent at the recorded pixel size."""
    import geopandas as gpd

    from glaviz.config.base import sidecar_record
    from glaviz.runs.records import read_record

    assert source.inventory is not None
    frame = gpd.read_file(source.inventory, layer="glaciers")
    if frame.crs is None or not len(frame):
        raise InputError(f"inventory {source.inventory} has no glaciers with a CRS to compare")
    if frame.crs.is_geographic:
        lon, lat = frame.geometry.union_all().representative_point().coords[0]
        frame = frame.to_crs(utm_crs(lon, lat))
    record = read_record(sidecar_record(source.inventory)) or {}
    pixel = (record.get("grid") or {}).get("pixel_m") or [10.0, 10.0]
    res = float(pixel[0])
    log.warning(
        "the outlines %s was built from are gone; working on its glaciers' extent at %.1f m, "
        "and everything outside its glaciers counts as observed",
        source.inventory,
        res,
    )
    left, bottom, right, top = (float(v) for v in frame.total_bounds)
    base = Grid(frame.crs, Affine(res, 0, left, 0, -res, top), 1, 1)
    return _snapped(base, (left - res, bottom - res, right + res, top + res))


# ----------------------------------------------------------------------------- reading


def read_date(source: DateSource, grid: Grid, *, reference_id: str | None = None) -> DateMap:
    """One date on ``grid``: ice, observed pixels, low confidence; inventories come labelled."""
    if source.inventory is not None:
        return _read_inventory(source, grid, reference_id)
    ice = np.zeros((grid.height, grid.width), dtype=bool)
    valid = np.zeros_like(ice)
    low: np.ndarray | None = None
    for part in source.rasters:
        part_ice, part_valid = read_outlines(part.outlines, grid)
        take = part_valid & (~valid | part_ice)  # a scene's ice wins over a neighbour's edge
        ice[take] = part_ice[take]
        valid |= part_valid
        del part_ice, take
        if part.confidence is not None:
            part_low = read_low_confidence(part.confidence, grid)
            low = part_low & part_valid if low is None else low | (part_low & part_valid)
    if not valid.any():
        raise InputError(
            f"{source.name} has no observed pixel on the grid of the earliest input "
            f"({format_bounds(grid.bounds)} in {crs_name(grid.crs)}); the inputs do not overlap"
        )
    flags = {p.calibrated for p in source.rasters if p.confidence is not None}
    calibrated = None if not flags else all(bool(f) for f in flags)
    return DateMap(source, ice, valid, low, calibrated=calibrated)


def _open_on_grid(path: Path, grid: Grid, what: str) -> Any:
    src = open_raster(path, what, missing="check the input path")
    try:
        require_crs(src, path, what)
        if not bounds_overlap(src.bounds, src.crs, grid.bounds, grid.crs):
            shown = format_bounds_in(src.bounds, src.crs, grid.crs)
            raise InputError(
                f"{what} {path} does not overlap the earliest input (bounds "
                f"{format_bounds(grid.bounds)}, {path.name} {shown} in {crs_name(grid.crs)}); "
                "compare inputs of the same region, and check their CRS"
            )
    except BaseException:
        src.close()
        raise
    return src


def _on_grid(src: Any, grid: Grid, fill: float, dtype: Any) -> np.ndarray:
    """Band 1 of ``src`` on ``grid`` (nearest neighbour); ``fill`` where it has no data."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    if same_grid(src, grid):
        return src.read(1)
    out = np.full((grid.height, grid.width), fill, dtype=dtype)
    reproject(
        rasterio.band(src, 1),
        out,
        src_nodata=src.nodata if src.nodata is not None else fill,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=fill,
        resampling=Resampling.nearest,
    )
    return out


def read_outlines(path: Path, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(ice, observed) of an outline raster on ``grid``; nodata and uncovered are unobserved."""
    with _open_on_grid(path, grid, "outlines") as src:
        nodata = src.nodata if src.nodata is not None else OUTLINE_NODATA
        band = _on_grid(src, grid, nodata, src.dtypes[0])
    valid = band != nodata
    if band.dtype.kind == "f":
        valid &= np.isfinite(band)
    ice = valid & (band == 1)
    return ice, valid


def read_low_confidence(path: Path, grid: Grid) -> np.ndarray:
    """Pixels whose confidence is below :data:`LOW_CONFIDENCE` (bool; NaN is not low)."""
    with _open_on_grid(path, grid, "confidence") as src:
        band = _on_grid(src, grid, np.nan, "float32")
        if src.nodata is not None and not np.isnan(src.nodata):
            band = np.where(band == src.nodata, np.nan, band)
    return band < LOW_CONFIDENCE


def _read_inventory(source: DateSource, grid: Grid, reference_id: str | None) -> DateMap:
    """An inventory's glaciers rasterised on ``grid`` (pixel centres), with their ids."""
    import geopandas as gpd
    from rasterio import features

    assert source.inventory is not None
    frame = gpd.read_file(source.inventory, layer="glaciers")
    if frame.crs is None:
        raise InputError(f"inventory {source.inventory} has no CRS; it cannot be placed")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].reset_index(drop=True)
    frame = frame.to_crs(grid.crs)
    if len(frame) and not bounds_overlap(
        tuple(frame.total_bounds), grid.crs, grid.bounds, grid.crs
    ):
        raise InputError(
            f"inventory {source.inventory} does not overlap the earliest input (bounds "
            f"{format_bounds(grid.bounds)}, inventory {format_bounds(frame.total_bounds)} in "
            f"{crs_name(grid.crs)}); compare inventories of the same region"
        )
    labels = np.zeros((grid.height, grid.width), dtype=np.int32)
    if len(frame):
        labels = features.rasterize(
            ((g, k) for k, g in enumerate(frame.geometry.values, start=1)),
            out_shape=labels.shape,
            transform=grid.transform,
            fill=0,
            dtype="int32",
        )
    if source.inventory_outlines is not None:
        _, valid = read_outlines(source.inventory_outlines, grid)
    else:
        valid = np.ones(labels.shape, dtype=bool)
    units = unit_table(frame, reference_id)
    return DateMap(source, labels > 0, valid, None, labels=labels, units=units)


def unit_table(frame: Any, reference_id: str | None) -> UnitTable:
    """Ids, reference ids, complexes and regions of a frame's rows (label = row + 1)."""
    from glaviz.inventory.grid import ID_CANDIDATES

    columns = list(frame.columns)
    n = len(frame)
    ids = (
        [str(v) for v in frame["glaviz_id"].tolist()]
        if "glaviz_id" in columns
        else [str(k) for k in range(1, n + 1)]
    )
    ref_col = reference_id if reference_id in columns else None
    if ref_col is None:
        ref_col = next((c for c in ID_CANDIDATES if c in columns and c != "glaviz_id"), None)
    refs = [_text(v) for v in frame[ref_col].tolist()] if ref_col else [None] * n
    complexes = [_text(v) for v in frame["complex_id"].tolist()] if "complex_id" in columns else []
    region_col = next((c for c in REGION_CANDIDATES if c in columns), None)
    regions = [_text(v) for v in frame[region_col].tolist()] if region_col else []
    return UnitTable(ids, refs, complexes or [None] * n, regions or [None] * n, ref_col)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)
