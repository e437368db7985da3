"""The working grid of an inventory run and the rasters read onto it.

Everything is computed on the outlines' own pixels, because those pixels *are* the ice that the
glaciers must partition. Geographic outlines are first warped (nearest neighbour) to the local
UTM zone, so that distances and areas in metres mean the same thing across the scene. The DEM is
warped onto that grid lazily, one complex's window at a time (bilinear), and the reference
inventory is reprojected to it and rasterised window by window. Every input is checked up front:
a missing CRS, or a DEM or reference that does not overlap the outlines (which is also what a
wrong CRS label looks like), is one ``InputError``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from glaviz.errors import ConfigError, InputError
from glaviz.published.groups import GROUP_STACK_BANDS
from glaviz.util.rasters import (
    bounds_overlap,
    crs_name,
    format_bounds,
    format_bounds_in,
    intersects,
    linear_unit,
    open_raster,
    read_as_float,
    require_crs,
    require_north_up,
    same_grid,
    warped_view,
)

log = logging.getLogger("glaviz.inventory")

#: Value of invalid pixels in deploy's outlines.tif (optical input missing).
OUTLINE_NODATA = 255
#: Column names tried, in order, when no --reference-id is given (RGI 7, RGI 6, GLIMS, generic).
ID_CANDIDATES = ("rgi_id", "RGIId", "GLIMSId", "glac_id", "id")


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid in a projected CRS (attributes named as rasterio's datasets)."""

    crs: Any
    transform: Affine
    width: int
    height: int

    @property
    def xres(self) -> float:
        """Pixel width in metres."""
        return abs(self.transform.a) * _metres_per_unit(self.crs)

    @property
    def yres(self) -> float:
        """Pixel height in metres."""
        return abs(self.transform.e) * _metres_per_unit(self.crs)

    @property
    def pixel_area_m2(self) -> float:
        return self.xres * self.yres

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        right = left + self.transform.a * self.width
        bottom = top + self.transform.e * self.height
        return (min(left, right), min(bottom, top), max(left, right), max(bottom, top))

    def window_transform(self, rows: slice, cols: slice) -> Affine:
        return self.transform * Affine.translation(cols.start, rows.start)


@dataclass
class Scene:
    """The ice mask on the working grid, and what is known about the pixels around it."""

    grid: Grid
    ice: np.ndarray  #: bool, glacier pixels
    invalid: np.ndarray  #: bool, nodata pixels of the outlines (e.g. missing optical data)
    outside: np.ndarray | None  #: bool, pixels outside the original scene (after a warp)
    path: Path
    date: str | None


def resolve_outlines(source: Path) -> tuple[Path, Path | None]:
    """OUTLINES.tif itself, or OUTDIR/outlines.tif and OUTDIR/run.json for a deploy folder."""
    source = Path(source)
    if source.is_dir():
        tif = source / "outlines.tif"
        if not tif.exists():
            raise InputError(
                f"{source} is a folder without outlines.tif; pass a glaviz deploy output folder "
                "or an outline GeoTIFF"
            )
        return tif, source / "run.json"
    if not source.exists():
        raise InputError(f"outlines {source} do not exist; pass a deploy folder or a GeoTIFF")
    record = source.with_name("run.json")
    return source, record if record.exists() else None


def acquisition_date(record: Path | None) -> str | None:
    """The ``date`` a deploy or batch run recorded in its settings or config, if any."""
    if record is None or not record.exists():
        return None
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    for section in ("settings", "config", "scene"):
        block = data.get(section) if isinstance(data, dict) else None
        if isinstance(block, dict):
            for key in ("date", "acquisition_date"):
                if block.get(key):
                    return str(block[key])
    return None


def open_outlines(source: Path) -> Scene:
    """Read the outline mask (1 = ice) onto the working grid, warping geographic ones to UTM."""
    path, record = resolve_outlines(source)
    with open_raster(path, "outlines") as src:
        require_crs(src, path, "outlines")
        require_north_up(src, path, "outlines")
        band = src.read(1)
        nodata = src.nodata if src.nodata is not None else OUTLINE_NODATA
        if src.crs.is_geographic:
            grid, band, outside = _warp_to_utm(src, band, nodata)
        else:
            grid = Grid(src.crs, src.transform, src.width, src.height)
            outside = None
    invalid = band == nodata
    ice = band == 1
    del band
    return Scene(grid, ice, invalid, outside, path, acquisition_date(record))


def utm_crs(lon: float, lat: float) -> Any:
    """The WGS 84 / UTM zone CRS of a point (north or south)."""
    from rasterio.crs import CRS

    zone = min(max(math.floor((lon + 180.0) / 6.0) + 1, 1), 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _warp_to_utm(src: Any, band: np.ndarray, nodata: float) -> tuple[Grid, np.ndarray, np.ndarray]:
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    left, bottom, right, top = src.bounds
    dst_crs = utm_crs((left + right) / 2, (bottom + top) / 2)
    transform, width, height = calculate_default_transform(
        src.crs, dst_crs, src.width, src.height, *src.bounds
    )
    # Square pixels: the geographic grid's pixels are rarely square on the ground.
    res = math.sqrt(abs(transform.a * transform.e))
    transform, width, height = calculate_default_transform(
        src.crs, dst_crs, src.width, src.height, *src.bounds, resolution=res
    )
    out = np.full((height, width), nodata, dtype=band.dtype)
    reproject(
        band,
        out,
        src_transform=src.transform,
        src_crs=src.crs,
        dst_transform=transform,
        dst_crs=dst_crs,
        src_nodata=nodata,
        dst_nodata=nodata,
        resampling=Resampling.nearest,
    )
    inside = np.zeros((height, width), dtype=np.uint8)
    reproject(
        np.ones_like(band, dtype=np.uint8),
        inside,
        src_transform=src.transform,
        src_crs=src.crs,
        dst_transform=transform,
        dst_crs=dst_crs,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    outside = inside == 0
    out[outside & (out == nodata)] = 0  # outside the scene is not "invalid data" but no scene
    log.info("outlines are geographic; working in %s at %.1f m", dst_crs, res)
    return Grid(dst_crs, transform, width, height), out, outside


def _metres_per_unit(crs: Any) -> float:
    """Metres per CRS unit; a CRS without a linear unit is taken to be in metres."""
    unit = linear_unit(crs)
    return unit[1] if unit is not None else 1.0


class DemReader:
    """The DEM on the working grid, read (and warped, bilinear) one window at a time."""

    def __init__(self, path: Path, grid: Grid) -> None:
        self.path = Path(path)
        self._src = open_raster(self.path, "DEM", missing="check the --dem path")
        try:
            require_crs(self._src, self.path, "DEM")
            self._band = self._elevation_band()
            self._check_overlap(grid)
        except InputError:
            self._src.close()
            raise
        if same_grid(self._src, grid):
            self._view: Any = self._src
        else:
            self._view = warped_view(self._src, like=grid)

    def _elevation_band(self) -> int:
        """Band 1 of a single-band DEM; the band described as elevation of a glaviz stack.

        Any other multi-band raster is refused: reading its first band would take reflectances
        or backscatter for heights and write an inventory of nonsense elevations.
        """
        src = self._src
        if src.count == 1:
            return 1
        name = GROUP_STACK_BANDS["dem"][0]
        if name in src.descriptions:
            return src.descriptions.index(name) + 1
        raise InputError(
            f"DEM {self.path} has {src.count} bands and none is described as {name!r}; give a "
            "single-band elevation raster, or the feature stack of glaviz features"
        )

    def _check_overlap(self, grid: Grid) -> None:
        """Refuse a DEM that misses the outlines, which is also what a wrong CRS label does."""
        src = self._src
        if bounds_overlap(src.bounds, src.crs, grid.bounds, grid.crs):
            return
        shown = format_bounds_in(src.bounds, src.crs, grid.crs)
        raise InputError(
            f"DEM {self.path} does not overlap the outlines (outline bounds "
            f"{format_bounds(grid.bounds)}, DEM bounds {shown} in {crs_name(grid.crs)}); "
            "check the DEM's CRS"
        )

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        """Elevations of a window of the working grid, float32, NaN where there are none."""
        from rasterio.windows import Window

        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        return read_as_float(self._view, self._band, window)

    def close(self) -> None:
        if self._view is not self._src:
            self._view.close()
        self._src.close()


class ReferenceInventory:
    """A reference inventory (e.g. RGI) reprojected to the working grid, rasterised on demand.

    Rows are numbered from 1 in file order; that number is the marker value and the key of
    ``ids`` and ``attributes``.
    """

    def __init__(self, path: Path, grid: Grid, id_field: str | None) -> None:
        import geopandas as gpd

        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"reference {self.path} does not exist; check the --reference path")
        try:
            frame = gpd.read_file(self.path)
        except Exception as exc:  # pyogrio/fiona raise their own DataSourceError types
            raise InputError(f"cannot read reference {self.path}: {exc}") from None
        if frame.crs is None:
            raise InputError(
                f"reference {self.path} has no CRS; assign one (ogr2ogr -a_srs EPSG:<code>)"
            )
        self.id_field = _id_field(frame, id_field, self.path)
        if frame[self.id_field].duplicated().any():
            dup = frame[self.id_field][frame[self.id_field].duplicated()].iloc[0]
            raise InputError(
                f"reference ids in column {self.id_field!r} of {self.path} are not unique "
                f"(e.g. {dup!r}); choose another --reference-id"
            )
        frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].reset_index(drop=True)
        if len(frame) == 0:
            raise InputError(
                f"reference {self.path} holds no glacier outlines (no features with a geometry); "
                "give an inventory with polygons, or leave out --reference to split from the DEM"
            )
        frame = frame.to_crs(grid.crs)
        if len(frame) == 0 or not intersects(tuple(frame.total_bounds), grid.bounds):
            raise InputError(
                f"reference {self.path} does not overlap the outlines (outline bounds "
                f"{format_bounds(grid.bounds)}, reference bounds "
                f"{format_bounds(frame.total_bounds) if len(frame) else '(empty)'} in "
                f"{crs_name(grid.crs)}); check the reference's CRS"
            )
        self.grid = grid
        self.frame = frame
        self.ids = frame[self.id_field].tolist()
        self._sindex = frame.sindex

    def rasterize(self, rows: slice, cols: slice) -> np.ndarray:
        """Marker raster (row number + 1, 0 = none) of a window of the working grid (uint32)."""
        from rasterio import features
        from shapely.geometry import box

        transform = self.grid.window_transform(rows, cols)
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        left, top = transform.c, transform.f
        right, bottom = transform * (shape[1], shape[0])
        hits = self._sindex.query(
            box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        )
        if len(hits) == 0:
            return np.zeros(shape, dtype=np.uint32)
        geoms = self.frame.geometry.values
        return features.rasterize(
            ((geoms[i], int(i) + 1) for i in sorted(hits)),
            out_shape=shape,
            transform=transform,
            fill=0,
            dtype="uint32",
        )

    def attributes(self, marker: int) -> dict[str, Any]:
        """The reference's own columns of one glacier (without geometry)."""
        row = self.frame.iloc[marker - 1]
        return {k: v for k, v in row.items() if k != self.frame.geometry.name}


def _id_field(frame: Any, requested: str | None, path: Path) -> str:
    columns = [c for c in frame.columns if c != frame.geometry.name]
    if requested is not None:
        if requested not in columns:
            raise ConfigError(
                f"reference {path} has no column {requested!r}; its columns are "
                f"{', '.join(columns) or '(none)'}"
            )
        return requested
    for name in ID_CANDIDATES:
        if name in columns:
            return name
    raise ConfigError(
        f"cannot tell which column of {path} holds the glacier ids (tried "
        f"{', '.join(ID_CANDIDATES)}); pass --reference-id, one of: {', '.join(columns) or '-'}"
    )
