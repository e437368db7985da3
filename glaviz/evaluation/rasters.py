"""Scoring a deployed map (``outlines.tif``) against reference outlines, raster or vector.

Everything happens on the **prediction's grid**, since that is the map being judged:

- raster truth is warped onto it with nearest-neighbour resampling (labels must not be blended)
  when the grids differ; what the truth does not cover, and its nodata, is left out;
- vector truth (GeoPackage, shapefile, GeoJSON, …) is reprojected to the prediction's CRS and
  burnt in with ``all_touched=False`` (a pixel is glacier when its centre lies in a polygon, the
  GDAL default and the unbiased choice: ``all_touched=True`` inflates every outline by up to a
  pixel); outside the polygons is background;
- the prediction's nodata pixels (255 in ``outlines.tif``) are left out.

Truth that does not overlap the prediction — typically outlines whose coordinates are in another
CRS than the one they are labelled with — is refused with both bounds and CRSs, instead of
scoring a map against nothing.

The prediction is read in blocks of full-width rows (the vector truth is rasterised per block
from a spatial index), so memory depends on the width of the scene, not its size.

Glacier areas are summed over the evaluated pixels with the true area of each pixel: the
map-plane pixel area for projected CRSs (in metres through the CRS's unit), the exact
ellipsoidal area of each pixel's row for geographic CRSs (pixels shrink with cos(latitude)).
"""

from __future__ import annotations

import logging
import math
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import InputError
from glaviz.evaluation.metrics import Areas, Counts, Evaluation
from glaviz.util.rasters import (
    bounds_overlap,
    crs_name,
    format_bounds,
    intersects,
    linear_unit,
    open_raster,
    reproject_bounds,
    require_crs,
    same_grid,
)

__all__ = ["VECTOR_SUFFIXES", "PixelArea", "evaluate_rasters"]

log = logging.getLogger(__name__)

#: File name endings read as vector truth; anything else is opened as a raster.
VECTOR_SUFFIXES = frozenset({".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml"})
#: Pixels per block of prediction rows.
BLOCK_PIXELS = 1 << 22


def evaluate_rasters(
    *, prediction: str | Path, truth: str | Path, progress: bool = False
) -> Evaluation:
    """Score a 0/1 outlines raster against raster or vector truth, with glacier areas in km².

    Returns an :class:`Evaluation` whose ``total`` holds the counts (no regions) and whose
    ``areas`` holds the glacier area of prediction and truth over the evaluated pixels.
    """
    from glaviz.util.progress import Progress

    prediction, truth = Path(prediction), Path(truth)
    with ExitStack() as stack:
        pred = _open_raster(stack, prediction, option="--prediction")
        require_crs(pred, prediction, "prediction raster")
        if truth.suffix.lower() in VECTOR_SUFFIXES:
            reader: _VectorTruth | _RasterTruth = _VectorTruth(truth, pred, prediction)
        else:
            reader = _RasterTruth(stack, truth, pred, prediction)
        areas = PixelArea(pred.crs, pred.transform)

        result = Evaluation()
        pred_area = truth_area = 0.0
        windows = list(_row_blocks(pred))
        with Progress(progress, total=len(windows), description="evaluate") as bar:
            for window in windows:
                values, pred_valid = _read_prediction(pred, window, prediction)
                true_glacier, true_valid = reader.read(window)
                valid = pred_valid & true_valid
                pred_glacier = values == 1
                result.add(
                    Counts.from_arrays(
                        pred_glacier.astype(np.uint8), true_glacier.astype(np.uint8), valid
                    )
                )
                result.excluded_pixels += int(valid.size - np.count_nonzero(valid))
                pixel_km2 = areas.window(window)
                pred_area += float(np.sum(pixel_km2 * (pred_glacier & valid)))
                truth_area += float(np.sum(pixel_km2 * (true_glacier & valid)))
                bar.advance()
    result.areas = Areas(prediction_km2=pred_area, truth_km2=truth_area)
    result.tiles = 1
    return result


# ----------------------------------------------------------------------------- prediction


def _require_file(path: Path, option: str) -> None:
    """Refuse a missing prediction or truth file, raster or vector alike."""
    if not path.exists():
        raise InputError(f"{option} file {path} does not exist; check the path")


def _open_raster(stack: ExitStack, path: Path, *, option: str) -> Any:
    """Open the prediction or raster truth; a truth GDAL cannot read may be a vector file
    with an ending evaluate does not know, so that message lists the ones it does."""
    _require_file(path, option)
    hint = (
        "; vector truth must end in " + ", ".join(sorted(VECTOR_SUFFIXES))
        if option == "--truth"
        else ""
    )
    return stack.enter_context(open_raster(path, f"{option} raster", hint=hint))


def _row_blocks(src: Any) -> Any:
    from rasterio.windows import Window

    block_rows = src.block_shapes[0][0] if src.block_shapes else 1
    rows = max(1, BLOCK_PIXELS // max(src.width, 1))
    rows = max(block_rows, rows // block_rows * block_rows)
    for row in range(0, src.height, rows):
        yield Window(0, row, src.width, min(rows, src.height - row))


def _read_valid(src: Any, window: Any) -> tuple[np.ndarray, np.ndarray]:
    """Band 1 of a window in its own dtype, and where it holds data (not nodata, masked, NaN).

    The values keep their dtype (unlike :func:`~glaviz.util.rasters.read_as_float`): labels
    are compared as integers, and a float label raster may hold NaN for "no data".
    """
    band = src.read(1, window=window, masked=True)
    values = np.ma.getdata(band)
    valid = ~np.ma.getmaskarray(band)
    if np.issubdtype(values.dtype, np.floating):
        valid &= np.isfinite(values)
    return values, valid


def _read_prediction(src: Any, window: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Band 1 of the outlines and where it is valid; values other than 0/1 are refused.

    A probability or confidence raster given by mistake would otherwise be scored as mostly
    "excluded" and produce plausible-looking nonsense.
    """
    values, valid = _read_valid(src, window)
    bad = valid & (values != 0) & (values != 1)
    if bad.any():
        sample = values[bad].flat[0]
        raise InputError(
            f"prediction raster {path} has the value {sample!r} outside 0/1 and its nodata "
            f"({src.nodata!r}); --prediction expects glacier outlines (0 background, 1 glacier, "
            "nodata excluded), such as outlines.tif of glaviz deploy"
        )
    return values, valid


# ----------------------------------------------------------------------------- truth


def _no_overlap(
    *, prediction: Path, pred: Any, truth: Path, truth_bounds: Any, truth_crs: Any
) -> InputError:
    shown = reproject_bounds(truth_bounds, truth_crs, pred.crs)
    converted = f", that is {format_bounds(shown)} in {crs_name(pred.crs)}" if shown else ""
    return InputError(
        f"{truth} does not overlap {prediction}: prediction bounds {format_bounds(pred.bounds)} "
        f"in {crs_name(pred.crs)}; truth bounds {format_bounds(truth_bounds)} in its CRS "
        f"{crs_name(truth_crs)}{converted}. Check the CRS of {truth}: outlines labelled with "
        "the wrong CRS land somewhere else (relabel them, e.g. ogr2ogr -a_srs EPSG:<code>), "
        "and truth of another area cannot score this map"
    )


class _RasterTruth:
    """Raster truth on the prediction grid: glacier = non-zero, nodata and outside left out."""

    def __init__(self, stack: ExitStack, path: Path, pred: Any, prediction: Path) -> None:
        from rasterio.enums import MaskFlags, Resampling
        from rasterio.vrt import WarpedVRT

        src = _open_raster(stack, path, option="--truth")
        require_crs(src, path, "truth raster")
        if not bounds_overlap(src.bounds, src.crs, pred.bounds, pred.crs):
            raise _no_overlap(
                prediction=prediction,
                pred=pred,
                truth=path,
                truth_bounds=src.bounds,
                truth_crs=src.crs,
            )
        if same_grid(src, pred):
            self.view = src
        else:
            # Nearest neighbour: labels are categories. Without nodata or a mask, an alpha band
            # marks what the truth does not cover, so it is left out instead of counted as 0.
            all_valid = all(flags == [MaskFlags.all_valid] for flags in src.mask_flag_enums[:1])
            self.view = stack.enter_context(
                WarpedVRT(
                    src,
                    crs=pred.crs,
                    transform=pred.transform,
                    width=pred.width,
                    height=pred.height,
                    resampling=Resampling.nearest,
                    add_alpha=src.nodata is None and all_valid,
                )
            )

    def read(self, window: Any) -> tuple[np.ndarray, np.ndarray]:
        values, valid = _read_valid(self.view, window)
        return valid & (values != 0), valid


class _VectorTruth:
    """Polygons in the prediction's CRS, rasterised per block from a spatial index."""

    def __init__(self, path: Path, pred: Any, prediction: Path) -> None:
        import geopandas
        import pyogrio

        _require_file(path, "--truth")
        try:
            info = pyogrio.read_info(path)
        except Exception as error:  # pyogrio raises several DataSource errors
            raise InputError(f"cannot read vector truth {path}: {error}") from None
        if not info.get("crs"):
            raise InputError(
                f"vector truth {path} has no CRS, so it cannot be placed on the prediction grid; "
                "assign the right one, e.g. ogr2ogr -a_srs EPSG:<code> fixed.gpkg "
                f"{path}"
            )
        from rasterio.crs import CRS

        truth_crs = CRS.from_user_input(info["crs"])
        # Read only what can touch the map: RGI region files hold far more than one scene.
        bbox = reproject_bounds(pred.bounds, pred.crs, truth_crs)
        try:
            frame = geopandas.read_file(path, bbox=bbox, engine="pyogrio")
        except Exception as error:  # pyogrio/GDAL errors vary by driver
            raise InputError(f"cannot read vector truth {path}: {error}") from None
        geometry = frame.geometry
        frame = frame[geometry.notna() & ~geometry.is_empty]
        total = info.get("total_bounds")
        if frame.empty and not info.get("features"):
            raise InputError(
                f"vector truth {path} holds no outlines (no features); give the reference "
                "outlines of the mapped area (a map with no glacier at all needs a raster truth "
                "of zeros, which says where it was checked)"
            )
        if frame.empty:
            if total is None or not all(math.isfinite(v) for v in total):
                total = (math.nan,) * 4
            raise _no_overlap(
                prediction=prediction,
                pred=pred,
                truth=path,
                truth_bounds=total,
                truth_crs=truth_crs,
            )
        polygonal = frame.geom_type.isin(["Polygon", "MultiPolygon"])
        if not polygonal.any():
            kinds = ", ".join(sorted(set(frame.geom_type)))
            raise InputError(
                f"vector truth {path} has no polygons near the map (found {kinds}); glacier "
                "outlines must be polygons"
            )
        if not polygonal.all():
            log.warning("%s: ignoring %d non-polygon feature(s)", path, int((~polygonal).sum()))
        frame = frame[polygonal]
        if CRS.from_user_input(frame.crs) != pred.crs:
            frame = frame.to_crs(pred.crs.to_wkt())
        bounds = frame.total_bounds
        if not (np.all(np.isfinite(bounds)) and intersects(bounds, pred.bounds)):
            raise _no_overlap(
                prediction=prediction,
                pred=pred,
                truth=path,
                truth_bounds=total if total is not None else bounds,
                truth_crs=truth_crs,
            )
        self.geometries = frame.geometry.values
        self.index = frame.sindex
        self.transform = pred.transform

    def read(self, window: Any) -> tuple[np.ndarray, np.ndarray]:
        from rasterio.features import rasterize
        from rasterio.windows import transform as window_transform
        from shapely.geometry import box

        height, width = int(window.height), int(window.width)
        corners = [
            self.transform @ (window.col_off + dc, window.row_off + dr)
            for dc in (0, width)
            for dr in (0, height)
        ]
        xs, ys = zip(*corners, strict=True)
        hits = self.index.query(box(min(xs), min(ys), max(xs), max(ys)))
        valid = np.ones((height, width), dtype=bool)
        if len(hits) == 0:
            return np.zeros((height, width), dtype=bool), valid
        burnt = rasterize(
            ((geom, 1) for geom in self.geometries[np.sort(hits)]),
            out_shape=(height, width),
            transform=window_transform(window, self.transform),
            fill=0,
            all_touched=False,
            dtype="uint8",
        )
        return burnt.astype(bool), valid


# ----------------------------------------------------------------------------- areas


class PixelArea:
    """Area of each pixel of a grid in km², for a window of rows.

    Projected CRS: ``|det(transform)|`` in the CRS's linear unit, converted to metres.
    Geographic CRS, north-up grid: the exact area of each row's pixels on the CRS's ellipsoid
    (the zone between two parallels, split by longitude). Rotated geographic grids use the
    local ellipsoid radii at each pixel centre (exact to the square of the pixel size).
    """

    def __init__(self, crs: Any, transform: Any) -> None:
        self.transform = transform
        self.geographic = bool(crs.is_geographic)
        if self.geographic:
            import pyproj

            ellipsoid = pyproj.CRS.from_user_input(crs.to_wkt()).ellipsoid
            self.a = float(ellipsoid.semi_major_metre) if ellipsoid else 6371008.8
            self.b = float(ellipsoid.semi_minor_metre) if ellipsoid else 6371008.8
            self.north_up = transform.b == 0 and transform.d == 0
        else:
            known = linear_unit(crs)
            if known is None:
                log.warning("CRS %s has no linear unit; areas assume metres", crs_name(crs))
            unit, factor = known or ("unknown", 1.0)
            self.constant_km2 = abs(transform.determinant) * float(factor) ** 2 / 1e6
            self.unit = unit

    def window(self, window: Any) -> np.ndarray:
        """Areas broadcastable to the window's (rows, cols): one column when rows suffice."""
        height, width = int(window.height), int(window.width)
        if not self.geographic:
            return np.full((height, 1), self.constant_km2)
        row0, col0 = int(window.row_off), int(window.col_off)
        if self.north_up:
            t = self.transform
            top = t.f + t.e * (row0 + np.arange(height, dtype=np.float64))
            lat1, lat2 = top, top + t.e
            dlon = math.radians(abs(t.a))
            return (
                np.abs(_zone_area(self.a, self.b, lat2) - _zone_area(self.a, self.b, lat1)) * dlon
            )[:, None] / 1e6
        rows, cols = np.mgrid[row0 : row0 + height, col0 : col0 + width] + 0.5
        _, lat = self.transform @ (cols, rows)
        phi = np.radians(np.clip(lat, -90.0, 90.0))
        e2 = 1.0 - (self.b / self.a) ** 2
        w = 1.0 - e2 * np.sin(phi) ** 2
        meridian = self.a * (1.0 - e2) / w**1.5
        normal = self.a / np.sqrt(w)
        return (
            abs(self.transform.determinant)
            * math.radians(1.0) ** 2
            * meridian
            * normal
            * (np.cos(phi))
            / 1e6
        )


def _zone_area(a: float, b: float, lat_deg: np.ndarray) -> np.ndarray:
    """Area in m² per radian of longitude between the equator and ``lat_deg`` (signed).

    ``a² q(φ) / 2`` with ``q`` the authalic-latitude function of the ellipsoid; on a sphere
    this is ``a² sin φ``.
    """
    phi = np.radians(np.clip(lat_deg, -90.0, 90.0))
    s = np.sin(phi)
    e2 = 1.0 - (b / a) ** 2
    if e2 < 1e-15:
        return a * a * s
    e = math.sqrt(e2)
    q = (1.0 - e2) * (s / (1.0 - e2 * s * s) - np.log((1.0 - e * s) / (1.0 + e * s)) / (2.0 * e))
    return a * a * q / 2.0
