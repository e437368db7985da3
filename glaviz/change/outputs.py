"""The files of ``glaviz change``: change.gpkg, change.csv, change.tif and change.png.

Everything is written under temporary names inside the output folder
(:class:`glaviz.runs.outputs.OutputFolder`) and renamed at the end, ``run.json`` last. The
GeoPackage has the layers ``glaciers`` (one row per group and date pair, with its footprint:
the pixels of its glaciers at either date), ``lost``, ``gained`` and ``unobserved`` (polygons of
each group, per pair) and ``totals`` (the sums, no geometry). change.tif is a Cloud-Optimised
GeoTIFF with one band per date pair (0 no ice, 1 ice at both dates, 2 lost, 3 gained, 255
unobserved at either date), written with deploy's COG writer.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.change.match import STRIP_ROWS, Matching
from glaviz.change.measure import GAINED, ICE_BOTH, LOST, NO_ICE, UNOBSERVED
from glaviz.inventory.grid import Grid

#: Colours of change.tif and change.png (RGBA).
CODE_COLOURS = {
    NO_ICE: (240, 240, 240, 255),
    ICE_BOTH: (120, 180, 230, 255),
    LOST: (215, 48, 39, 255),
    GAINED: (26, 152, 80, 255),
    UNOBSERVED: (150, 150, 150, 255),
}
CODE_NAMES = {
    NO_ICE: "no ice",
    ICE_BOTH: "ice at both dates",
    LOST: "lost",
    GAINED: "gained",
    UNOBSERVED: "unobserved",
}
#: Columns of change.csv and of the glaciers layer, in order (the reference id column, when
#: there is one, follows ``id_t1``; ``complex`` and ``region`` are added when known).
COLUMNS = (
    "level",
    "unit",
    "date_t0",
    "date_t1",
    "match",
    "id_t0",
    "id_t1",
    "n_t0",
    "n_t1",
    "area_t0_km2",
    "area_t1_km2",
    "change_km2",
    "change_pct",
    "rate_km2_yr",
    "rate_pct_yr",
    "unobserved_km2",
    "uncertainty_buffer_km2",
    "uncertainty_confidence_km2",
    "significant",
)


def footprint(l0: np.ndarray, l1: np.ndarray, matching: Matching) -> np.ndarray:
    """Group of every pixel that is ice at either date (int32, 0 elsewhere)."""
    out = np.empty(l0.shape, dtype=np.int32)
    for r in range(0, l0.shape[0], STRIP_ROWS):
        g0 = matching.group0[l0[r : r + STRIP_ROWS]]
        out[r : r + STRIP_ROWS] = np.where(g0 > 0, g0, matching.group1[l1[r : r + STRIP_ROWS]])
    return out


def group_polygons(groups: np.ndarray, mask: np.ndarray, grid: Grid) -> dict[int, Any]:
    """One (multi)polygon per group over the pixels of ``mask`` (4-connected, as deploy's)."""
    from rasterio import features
    from shapely import union_all
    from shapely.geometry import shape

    parts: dict[int, list[Any]] = {}
    if not mask.any():
        return {}
    for geom, value in features.shapes(groups, mask=mask, connectivity=4, transform=grid.transform):
        parts.setdefault(int(value), []).append(shape(geom))
    return {k: (v[0] if len(v) == 1 else union_all(v)) for k, v in parts.items()}


def polygon_layer(polygons: dict[int, Any], pair: tuple[str, str], grid: Grid) -> Any:
    """A layer of group polygons of one pair, with their geodesic areas."""
    import geopandas as gpd

    from glaviz.inventory.attributes import geodesic_area_km2

    keys = sorted(polygons)
    frame = gpd.GeoDataFrame(
        {
            "unit": [str(k) for k in keys],
            "date_t0": [pair[0]] * len(keys),
            "date_t1": [pair[1]] * len(keys),
        },
        geometry=[polygons[k] for k in keys],
        crs=grid.crs,
    )
    areas = geodesic_area_km2(frame.geometry.to_crs("EPSG:4326").values) if len(frame) else []
    frame["area_km2"] = np.asarray(areas, dtype=np.float64)
    return frame


def ordered_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The table's columns: the contract's, the reference id after ``id_t1``, then the rest."""
    names = list(COLUMNS)
    seen = {k for r in rows for k, v in r.items() if v is not None}
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in names]
    ref = [k for k in extra if k not in ("complex", "region", "whole_t0_km2", "whole_t1_km2")]
    names[names.index("id_t1") + 1 : names.index("id_t1") + 1] = ref
    return names + [k for k in ("complex", "region") if k in seen]


def glacier_frame(rows: list[dict[str, Any]], geometries: list[Any], grid: Grid) -> Any:
    """The glacier rows as a GeoDataFrame in the working grid's CRS."""
    import geopandas as gpd
    import pandas as pd

    columns = ordered_columns(rows)
    frame = pd.DataFrame(rows).reindex(columns=columns)
    return gpd.GeoDataFrame(frame, geometry=list(geometries), crs=grid.crs)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """All rows (glaciers, then sums) as CSV; empty cells for missing values."""
    columns = ordered_columns(rows)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) >= 1e4 or value == 0 else f"{value:.9g}"
    return value


def write_gpkg(path: Path, layers: dict[str, Any]) -> None:
    """Every layer into one GeoPackage (tables without geometry through pyogrio)."""
    import pyogrio

    for name, frame in layers.items():
        if hasattr(frame, "crs") and "geometry" in frame.columns:
            frame.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
        else:
            pyogrio.write_dataframe(frame, path, layer=name, driver="GPKG")


class ChangeRaster:
    """change.tif, band by band: a tiled stand-in first, the COG copy at :meth:`finish`."""

    def __init__(self, scratch: Path, grid: Grid, bands: list[str]) -> None:
        import rasterio

        from glaviz.engine.outputs import geotiff_profile

        base = {
            "width": grid.width,
            "height": grid.height,
            "crs": grid.crs,
            "transform": grid.transform,
        }
        profile = geotiff_profile(base, count=len(bands), dtype="uint8", nodata=UNOBSERVED)
        self.scratch = scratch
        self._ds = rasterio.open(scratch, "w", **profile)
        self._ds.write_colormap(1, CODE_COLOURS)
        for k, name in enumerate(bands, start=1):
            self._ds.set_band_description(k, name)

    def write(self, band: int, codes: np.ndarray) -> None:
        self._ds.write(codes, band)

    def finish(self, target: Path) -> None:
        from glaviz.engine.outputs import write_cog

        self._ds.close()
        write_cog(self.scratch, target, resampling="nearest")

    def close(self) -> None:
        if not self._ds.closed:
            self._ds.close()
