"""Deploy's output files: temporary names while running, one commit at the end.

Every output is written under a hidden temporary name in OUTDIR and renamed only when the whole
run has succeeded, ``run.json`` last, so a killed run never leaves anything that looks finished.
With ``--overwrite``, outputs of an earlier run that this run does not produce are removed at the
commit, so OUTDIR never mixes two runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import InputError, OutputExistsError

OUTPUT_NAMES: tuple[str, ...] = (
    "outlines.tif",
    "confidence.tif",
    "probabilities.tif",
    "outlines.gpkg",
    "run.json",
)

#: Outline colours: background transparent, glacier ice blue, nodata transparent.
OUTLINE_COLORS = {0: (0, 0, 0, 0), 1: (0, 170, 255, 255), 255: (0, 0, 0, 0)}
OUTLINE_NODATA = 255


class OutputSet:
    """The files of one deploy run in ``outdir`` and their temporary stand-ins."""

    def __init__(self, outdir: Path, *, overwrite: bool) -> None:
        self.outdir = Path(outdir)
        if self.outdir.exists() and not self.outdir.is_dir():
            raise InputError(f"output folder {self.outdir} exists and is not a folder")
        existing = [n for n in OUTPUT_NAMES if (self.outdir / n).exists()]
        if existing and not overwrite:
            raise OutputExistsError(
                f"{self.outdir} already holds deploy outputs ({', '.join(existing)}); "
                "pass --overwrite to replace them, or choose another -o folder"
            )
        self.outdir.mkdir(parents=True, exist_ok=True)
        self._temps: dict[str, Path] = {}

    def temp(self, name: str) -> Path:
        """A hidden temporary path for output ``name`` (same folder, so rename is atomic)."""
        stem, dot, ext = name.partition(".")
        path = self.outdir / f".{stem}.partial-{os.getpid()}{dot}{ext}"
        self._temps[name] = path
        return path

    def commit(self) -> list[Path]:
        """Rename every temporary output to its final name (run.json last); drop stale outputs."""
        order = sorted(self._temps, key=lambda n: n == "run.json")
        for name in OUTPUT_NAMES:
            if name not in self._temps:
                (self.outdir / name).unlink(missing_ok=True)
        final = []
        for name in order:
            target = self.outdir / name
            os.replace(self._temps[name], target)
            final.append(target)
        self._temps.clear()
        return final

    def cleanup(self) -> None:
        """Remove temporary files after a failure (and GDAL side files next to them)."""
        for path in self._temps.values():
            for candidate in (path, path.with_name(path.name + ".aux.xml")):
                candidate.unlink(missing_ok=True)
        self._temps.clear()


def geotiff_profile(base: dict[str, Any], *, count: int, dtype: str, nodata: Any) -> dict[str, Any]:
    """A tiled, compressed GeoTIFF profile on the stack's grid."""
    profile = {
        "driver": "GTiff",
        "width": base["width"],
        "height": base["height"],
        "crs": base.get("crs"),
        "transform": base["transform"],
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        # Floating-point predictor for float data, horizontal differencing for integers.
        "predictor": 3 if dtype.startswith("float") else 2,
        "BIGTIFF": "IF_SAFER",
    }
    return profile


def write_run_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def vectorise_outlines(outlines_tif: Path, target: Path) -> int:
    """Polygonise glacier pixels (value 1) of ``outlines_tif`` into a GeoPackage layer.

    Each polygon is one 4-connected glacier patch with its area in km². The outline raster is read
    whole as uint8 (one byte per pixel; 120 MB for a 10980² Sentinel-2 tile), because a polygon
    may span the full scene. Returns the number of polygons.
    """
    import geopandas as gpd
    import rasterio
    from rasterio import features
    from shapely.geometry import shape

    with rasterio.open(outlines_tif) as src:
        band = src.read(1)
        crs, transform = src.crs, src.transform
    mask = band == 1
    geometries = [shape(geom) for geom, _ in features.shapes(band, mask=mask, transform=transform)]
    del band, mask
    gdf = gpd.GeoDataFrame({"class": ["glacier"] * len(geometries)}, geometry=geometries, crs=crs)
    if len(gdf) and crs is not None and crs.is_geographic:
        area_m2 = gdf.geometry.to_crs(gdf.estimate_utm_crs()).area
    else:
        area_m2 = gdf.geometry.area
    gdf["area_km2"] = np.asarray(area_m2, dtype=np.float64) / 1e6
    gdf.to_file(target, driver="GPKG", layer="glaciers")
    return len(gdf)
