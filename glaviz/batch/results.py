"""The batch's products: ``OUTPUT/summary.csv`` and the merged ``OUTPUT/outlines.gpkg``.

The merged layer is in EPSG:4326 (WGS 84 longitude/latitude): scenes of a global job come in
many UTM zones and polar projections, and no single projected CRS represents all of them well.
Areas are *geodesic* — computed on the WGS 84 ellipsoid from the polygon itself
(:meth:`pyproj.Geod.geometry_area_perimeter`), which is exact wherever the scene lies, unlike any
one equal-area projection's figure far from its centre. The per-scene ``outlines.gpkg`` keeps
the scene's own CRS (deploy's output, unchanged).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from glaviz.runs.atomic import atomic_path, write_text_atomic

#: Merged product CRS.
MERGED_CRS = "EPSG:4326"
MERGED_LAYER = "glaciers"
TIMING_COLUMNS: tuple[str, ...] = (
    "acquire_s",
    "features_s",
    "load_model_s",
    "deploy_s",
    "total_s",
)
#: Columns of ``summary.csv``. ``invalid_fraction`` and ``not_mapped_fraction`` are the shares of
#: the scene's pixels with invalid input and outside the region of interest: both unobserved.
#: ``acquired_dates``, ``cloud_in_aoi`` and ``coverage`` describe a scene acquired from a region
#: (its ``acquire/acquire.json`` has the whole provenance); ``date`` is then the composite's date.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "scene_id",
    "status",
    "error",
    "attempts",
    "worker",
    "date",
    "windows",
    "windows_computed",
    "windows_skipped_no_valid_pixel",
    "windows_skipped_outside_roi",
    "polygons",
    "glacier_area_km2",
    "invalid_fraction",
    "not_mapped_fraction",
    "acquired_dates",
    "cloud_in_aoi",
    "coverage",
    "peak_rss_mb",
    *TIMING_COLUMNS,
)


def geodesic_areas_km2(geometries: Any) -> list[float]:
    """Area on the WGS 84 ellipsoid of each (lon/lat) geometry, in km²."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    return [abs(geod.geometry_area_perimeter(g)[0]) / 1e6 for g in geometries]


def _read_lonlat(gpkg: Path) -> Any:
    import geopandas as gpd

    gdf = gpd.read_file(gpkg, layer=MERGED_LAYER)
    if gdf.crs is None:
        from glaviz.errors import InputError

        raise InputError(f"{gpkg} has no CRS, so its polygons cannot be placed on the globe")
    return gdf.to_crs(MERGED_CRS)


def glacier_area_km2(gpkg: Path) -> float:
    """Total geodesic glacier area of one scene's ``outlines.gpkg``."""
    gdf = _read_lonlat(gpkg)
    return float(sum(geodesic_areas_km2(gdf.geometry)))


def write_summary(path: Path, outcomes: Iterable[Any]) -> Path:
    """One row per scene, sorted by id; written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for o in sorted(outcomes, key=lambda o: o.id):
        area = o.glacier_area_km2
        writer.writerow(
            {
                "scene_id": o.id,
                "status": o.status,
                "error": o.error.splitlines()[0] if o.error else "",
                "attempts": o.attempts,
                "worker": o.worker,
                "date": o.date or "",
                "windows": "" if o.windows is None else o.windows,
                **{k: _blank(getattr(o, k, None)) for k in SELECTION_COLUMNS},
                "polygons": "" if o.polygons is None else o.polygons,
                "glacier_area_km2": "" if area is None else f"{area:.6f}",
                **{k: _fraction(getattr(o, k, None)) for k in FRACTION_COLUMNS},
                "acquired_dates": o.acquired_dates or "",
                "peak_rss_mb": "" if o.peak_rss_mb is None else f"{o.peak_rss_mb:.0f}",
                **{k: _seconds(o.timings.get(k)) for k in TIMING_COLUMNS},
            }
        )
    return write_text_atomic(path, buffer.getvalue())


SELECTION_COLUMNS = (
    "windows_computed",
    "windows_skipped_no_valid_pixel",
    "windows_skipped_outside_roi",
)
FRACTION_COLUMNS = ("invalid_fraction", "not_mapped_fraction", "cloud_in_aoi", "coverage")


def _blank(value: int | None) -> str | int:
    return "" if value is None else value


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def merge_outlines(path: Path, scenes: Sequence[tuple[str, str | None, Path]]) -> int:
    """Append every scene's polygons, in EPSG:4326 with scene id, date and geodesic area.

    ``scenes``: (scene id, ISO date or None, the scene's outlines.gpkg). Scenes are appended one
    at a time, so memory holds one scene's polygons, not the whole job's. Returns the polygon count.
    """
    import geopandas as gpd

    total = 0
    with atomic_path(path, suffix=".gpkg") as tmp:
        tmp.unlink()  # GDAL creates the GeoPackage itself
        for scene_id, date, gpkg in sorted(scenes):
            gdf = _read_lonlat(gpkg)
            merged = gpd.GeoDataFrame(
                {
                    "scene_id": [scene_id] * len(gdf),
                    "date": [date] * len(gdf),
                    "area_km2": geodesic_areas_km2(gdf.geometry),
                },
                geometry=gdf.geometry.values,
                crs=MERGED_CRS,
            )
            if not len(merged):
                continue
            merged.to_file(tmp, driver="GPKG", layer=MERGED_LAYER, mode="a" if total else "w")
            total += len(merged)
        if not total:
            empty = gpd.GeoDataFrame(
                {"scene_id": [], "date": [], "area_km2": []},
                geometry=gpd.GeoSeries([], crs=MERGED_CRS),
            )
            empty.to_file(tmp, driver="GPKG", layer=MERGED_LAYER)
    return total
