"""Deploy's region of interest: where a run maps, as a pixel mask on the stack's grid.

A region of interest (``--roi FILE``, or ``--roi-from-reference`` with an inventory's glaciers)
is buffered in metres, turned into a mask on the stack's grid, and then decides two things:
which windows the engine computes (those that meet it, :meth:`RoiMask.window_hits`), and which
pixels the writer marks as *not mapped* (those outside it get the outlines' nodata value).

- Vectors: anything GDAL/OGR reads (GeoPackage, shapefile, GeoJSON, FlatGeobuf …), reprojected to
  the stack's CRS. Polygons take the pixels whose centre they hold (GDAL's rasterisation rule,
  so a mask polygonised from the stack's own grid comes back pixel for pixel); points and lines,
  which hold no centre, take every pixel they touch.
- Raster masks: non-zero, non-nodata pixels are inside. On the stack's grid they are read as
  they are; on another grid they are resampled (nearest) onto it, or, with a buffer,
  polygonised and treated as vectors.
- Buffer: in metres, in the stack's projected CRS (converted to its linear unit). A geographic
  stack has no metric unit: the region is buffered in the UTM zone of its centre, where metres
  are true to about 0.1 % across a Sentinel-2 tile, and projected back.

The mask is held as packed bits (one bit per pixel: 15 MB for a 10980² tile) and rasterised in
bands of rows, so a whole tile never needs its mask as bytes at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.engine.tiling import TileGrid, window_hits
from glaviz.errors import InputError, first_line
from glaviz.util.rasters import crs_name, format_bounds

if TYPE_CHECKING:
    from glaviz.config.deploy import DeployConfig
    from glaviz.engine.reader import StackInfo

#: Rows rasterised at a time (a band of a 10980-wide tile is 22 MB as bytes).
BAND_ROWS = 2048
#: File endings read as raster masks without first trying them as vectors.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc")
#: Layer of a glaviz inventory (or of an RGI-style GeoPackage) that holds the glaciers.
GLACIER_LAYER = "glaciers"


@dataclass(frozen=True)
class RoiSource:
    """Where a region of interest comes from, as the run record states it."""

    path: Path
    kind: str  # "vector", "raster" or "reference"
    buffer_m: float
    layer: str | None = None
    buffered_in: str | None = None  # the CRS the buffer was drawn in
    files: tuple[Path, ...] = ()

    def record(self) -> dict[str, Any]:
        """The run record's ``roi`` section: source, buffer and the files' sha256."""
        from glaviz.util.hashing import sha256_file

        return {
            "path": str(self.path.resolve()),
            "kind": self.kind,
            "layer": self.layer,
            "buffer_m": self.buffer_m,
            "buffered_in": self.buffered_in,
            "sha256": {f.name: sha256_file(f) for f in self.files},
        }


@dataclass
class RoiMask:
    """The region of interest on the stack's grid: one bit per pixel, True inside."""

    height: int
    width: int
    packed: np.ndarray  # (height, ceil(width / 8)) uint8, np.packbits along rows
    source: RoiSource
    inside: int = field(default=0)

    def rows(self, start: int, n: int) -> np.ndarray:
        """``(n, width)`` bool: the mask of scene rows ``start … start + n``."""
        return np.unpackbits(self.packed[start : start + n], axis=1, count=self.width).astype(bool)

    def window_hits(self, grid: TileGrid, halo: int = 0) -> np.ndarray:
        """``(window rows, window columns)`` bool: the windows (grown by ``halo``) that meet the
        region, i.e. the windows a run inside it computes."""
        return window_hits(lambda a, b: self.rows(a, b - a), grid, halo)


def load_roi(config: DeployConfig, stack: StackInfo) -> RoiMask | None:
    """The region of interest of a deploy run on ``stack``, or None when it has none.

    Raises :class:`InputError` for a file that cannot be read, has no CRS, or does not overlap
    the stack (nothing would be mapped).
    """
    if config.roi is None and config.roi_from_reference is None:
        return None
    buffer_m = config.roi_buffer_m
    if config.roi_from_reference is not None:
        path = Path(config.roi_from_reference)
        source = RoiSource(path, "reference", buffer_m)
        mask = _from_vector(source, stack, glaciers=True)
    else:
        path = Path(config.roi)  # type: ignore[arg-type]
        if not path.exists():
            raise InputError(f"--roi {path} does not exist; check the path")
        mask = _from_raster_or_vector(RoiSource(path, "vector", buffer_m), stack)
    if mask.inside == 0:
        raise InputError(
            f"region of interest {path} (buffer {buffer_m:g} m) covers no pixel of stack "
            f"{stack.path} (bounds {format_bounds(_stack_bounds(stack))} in "
            f"{crs_name(stack.crs)}): nothing would be mapped; check that the region and the "
            "stack show the same place (and their CRSs), or enlarge --roi-buffer"
        )
    return mask


def _from_raster_or_vector(source: RoiSource, stack: StackInfo) -> RoiMask:
    """A ``--roi`` file: a raster mask when GDAL opens it as one, else a vector."""
    if source.path.suffix.lower() in RASTER_SUFFIXES:
        return _from_raster(source, stack)
    try:
        return _from_vector(source, stack, glaciers=False)
    except InputError as vector_error:
        import rasterio

        try:
            rasterio.open(source.path).close()
        except rasterio.errors.RasterioIOError:
            raise vector_error from None
        return _from_raster(source, stack)


# ----------------------------------------------------------------------------- vectors


def _read_vector(source: RoiSource, *, glaciers: bool) -> tuple[Any, str | None]:
    """The features of a vector file (the ``glaciers`` layer of an inventory when it has one)."""
    import geopandas as gpd

    what = "--roi-from-reference" if glaciers else "--roi"
    if not source.path.exists():
        raise InputError(f"{what} {source.path} does not exist; check the path")
    try:
        layers = [str(name) for name in gpd.list_layers(source.path)["name"]]
    except Exception as exc:  # pyogrio raises DataSourceError and others for what it cannot open
        raise InputError(
            f"cannot read {what} {source.path} as vector data ({first_line(exc)}); give a "
            "GeoPackage, shapefile or GeoJSON"
            + ("" if glaciers else ", or a raster mask (GeoTIFF, non-zero = inside)")
        ) from None
    layer = GLACIER_LAYER if GLACIER_LAYER in layers else (layers[0] if layers else None)
    try:
        frame = gpd.read_file(source.path, layer=layer)
    except Exception as exc:
        raise InputError(f"cannot read {what} {source.path}: {first_line(exc)}") from None
    if frame.crs is None:
        raise InputError(
            f"{what} {source.path} has no CRS, so it cannot be placed on the stack; set one "
            "(e.g. ogr2ogr -a_srs EPSG:4326 fixed.gpkg roi.gpkg)"
        )
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if not len(frame):
        raise InputError(f"{what} {source.path} holds no geometry; nothing to map")
    return frame, layer


def _from_vector(source: RoiSource, stack: StackInfo, *, glaciers: bool) -> RoiMask:
    frame, layer = _read_vector(source, glaciers=glaciers)
    geometries, buffered_in = _buffered(frame, stack, source.buffer_m)
    files = _dataset_files(source.path)
    source = RoiSource(source.path, source.kind, source.buffer_m, layer, buffered_in, files)
    return _rasterised(geometries, stack, source)


def _buffered(frame: Any, stack: StackInfo, buffer_m: float) -> tuple[list[Any], str | None]:
    """The geometries in the stack's CRS, buffered by ``buffer_m`` metres."""
    from glaviz.util.rasters import linear_unit

    if buffer_m <= 0:
        return list(frame.to_crs(stack.crs).geometry), None
    if stack.crs.is_geographic:
        centre = frame.to_crs(stack.crs)
        utm = centre.estimate_utm_crs()
        grown = centre.to_crs(utm).buffer(buffer_m).to_crs(stack.crs)
        return list(grown), crs_name(utm)
    unit = linear_unit(stack.crs)
    metres_per_unit = unit[1] if unit is not None else 1.0
    grown = frame.to_crs(stack.crs).buffer(buffer_m / metres_per_unit)
    return list(grown), crs_name(stack.crs)


def _rasterised(geometries: list[Any], stack: StackInfo, source: RoiSource) -> RoiMask:
    """Burn ``geometries`` (in the stack's CRS) into a packed mask, band of rows by band."""
    from rasterio.features import rasterize
    from shapely import box

    areal = [g for g in geometries if g.geom_type in ("Polygon", "MultiPolygon")]
    thin = [g for g in geometries if g.geom_type not in ("Polygon", "MultiPolygon")]
    packed = _empty_packed(stack)
    inside = 0
    for start, n, transform in _bands(stack):
        left, top = transform * (0, 0)
        right, bottom = transform * (stack.width, n)
        frame = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        band = np.zeros((n, stack.width), np.uint8)
        for shapes, touched in ((areal, False), (thin, True)):
            near = [g for g in shapes if g.intersects(frame)]
            if near:
                rasterize(near, out=band, transform=transform, all_touched=touched)
        packed[start : start + n] = np.packbits(band.astype(bool), axis=1)
        inside += int(np.count_nonzero(band))
    return RoiMask(stack.height, stack.width, packed, source, inside)


# ----------------------------------------------------------------------------- rasters


def _from_raster(source: RoiSource, stack: StackInfo) -> RoiMask:
    """A raster mask: non-zero valid pixels are inside."""
    from glaviz.util.rasters import nearest_view, open_raster, require_crs, same_grid

    with open_raster(source.path, "--roi raster mask", missing="check the path") as src:
        require_crs(src, source.path, "--roi raster mask")
        if source.buffer_m > 0:
            frame = _polygonised(src, source.path)
            geometries, buffered_in = _buffered(frame, stack, source.buffer_m)
            files = _dataset_files(source.path)
            buffered = RoiSource(source.path, "raster", source.buffer_m, None, buffered_in, files)
            return _rasterised(geometries, stack, buffered)
        view = src if same_grid(src, stack) else nearest_view(src, like=stack)
        packed = _empty_packed(stack)
        inside = 0
        for start, n, _ in _bands(stack):
            from rasterio.windows import Window

            data = view.read(1, window=Window(0, start, stack.width, n), masked=True)
            band = np.ma.filled(data != 0, False)
            packed[start : start + n] = np.packbits(band, axis=1)
            inside += int(np.count_nonzero(band))
    plain = RoiSource(source.path, "raster", 0.0, files=_dataset_files(source.path))
    return RoiMask(stack.height, stack.width, packed, plain, inside)


def _polygonised(src: Any, path: Path) -> Any:
    """The inside of a raster mask as polygons in its own CRS (to buffer them)."""
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape

    data = src.read(1, masked=True)
    inside = np.ma.filled(data != 0, False).astype(np.uint8)
    polygons = [shape(g) for g, v in shapes(inside, mask=inside == 1, transform=src.transform)]
    if not polygons:
        raise InputError(f"--roi raster mask {path} has no non-zero pixel; nothing to map")
    return gpd.GeoDataFrame(geometry=polygons, crs=src.crs)


# ----------------------------------------------------------------------------- helpers


def _empty_packed(stack: StackInfo) -> np.ndarray:
    return np.zeros((stack.height, (stack.width + 7) // 8), np.uint8)


def _bands(stack: StackInfo) -> Iterator[tuple[int, int, Any]]:
    """``(first row, rows, transform of the band)`` for bands of :data:`BAND_ROWS` rows."""
    from affine import Affine

    for start in range(0, stack.height, BAND_ROWS):
        n = min(BAND_ROWS, stack.height - start)
        yield start, n, stack.transform * Affine.translation(0, start)


def _stack_bounds(stack: StackInfo) -> tuple[float, float, float, float]:
    left, top = stack.transform * (0, 0)
    right, bottom = stack.transform * (stack.width, stack.height)
    return min(left, right), min(top, bottom), max(left, right), max(top, bottom)


def _dataset_files(path: Path) -> tuple[Path, ...]:
    """The files of a vector or raster dataset: a shapefile's .dbf, .shx, .prj … beside it."""
    if path.suffix.lower() != ".shp":
        return (path,)
    siblings = sorted(p for p in path.parent.glob(f"{path.stem}.*") if p.is_file())
    return tuple(siblings) or (path,)
