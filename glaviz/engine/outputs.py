"""Deploy's output folder: a lock, temporary names while running, one commit at the end.

Every output is written under a hidden temporary name in OUTDIR and renamed only when the whole
run has succeeded, ``run.json`` last, so a killed run never leaves anything that looks finished.
With ``--overwrite``, outputs of an earlier run that this run does not produce are removed at the
commit, so OUTDIR never mixes two runs. A failed run removes its temporary files, and OUTDIR
itself when the run created it. While a run writes, it holds an exclusive lock on OUTDIR (the
file ``.glaviz.lock`` inside it, removed at the end): a second deploy into the same folder fails
at once instead of interleaving its files with the first.

The GeoTIFFs are Cloud-Optimised (:func:`write_cog`): streamed row by row into a tiled
temporary file, then copied once by GDAL's COG driver, which adds internal overviews (nearest
for the outlines, average for the float outputs) and puts them in the order a web client needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.atomic import check_output_free
from glaviz.errors import InputError, OutputLockedError

OUTPUT_NAMES: tuple[str, ...] = (
    "outlines.tif",
    "confidence.tif",
    "probabilities.tif",
    "outlines.gpkg",
    "quicklook.png",
    "run.json",
)
LOCK_NAME = ".glaviz.lock"

#: Outline colours: background transparent, glacier ice blue, nodata transparent.
OUTLINE_COLORS = {0: (0, 0, 0, 0), 1: (0, 170, 255, 255), 255: (0, 0, 0, 0)}


class OutputSet:
    """The files of one deploy run in ``outdir`` and their temporary stand-ins.

    Use as a context manager: entering creates (and locks) the folder, leaving with an error
    removes the temporary files and the folder if this run created it.
    """

    def __init__(self, outdir: Path, *, overwrite: bool) -> None:
        self.outdir = Path(outdir)
        self.overwrite = overwrite
        self._temps: dict[str, Path] = {}
        self._scratch: list[Path] = []
        self._created: list[Path] = []
        self._lock: Any = None

    def __enter__(self) -> OutputSet:
        if self.outdir.exists() and not self.outdir.is_dir():
            raise InputError(f"output folder {self.outdir} exists and is not a folder")
        check_output_free(self.outdir, OUTPUT_NAMES, overwrite=self.overwrite)
        missing = [p for p in (self.outdir, *self.outdir.parents) if not p.exists()]
        self.outdir.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first: removed in this order after a failure
        try:
            self._acquire_lock()
        except BaseException:
            self._remove_created()
            raise
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.cleanup()
        self._release_lock()
        if exc_type is not None:
            self._remove_created()

    def _acquire_lock(self) -> None:
        from filelock import FileLock, Timeout

        lock = FileLock(self.outdir / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise OutputLockedError(
                f"another glaviz deploy is writing into {self.outdir} (it holds "
                f"{self.outdir / LOCK_NAME}); wait for it to finish or choose another -o folder"
            ) from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            (self.outdir / LOCK_NAME).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()  # only when empty: never removes anything else
            except OSError:
                break
        self._created = []

    def temp(self, name: str) -> Path:
        """A hidden temporary path for output ``name`` (same folder, so rename is atomic)."""
        stem, dot, ext = name.partition(".")
        path = self.outdir / f".{stem}.partial-{os.getpid()}{dot}{ext}"
        self._temps[name] = path
        return path

    def scratch(self, name: str) -> Path:
        """A hidden working file in the folder that is never committed (removed on failure)."""
        path = self.outdir / f".{name}.scratch-{os.getpid()}"
        self._scratch.append(path)
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
        for path in [*self._temps.values(), *self._scratch]:
            for candidate in (path, path.with_name(path.name + ".aux.xml")):
                candidate.unlink(missing_ok=True)
        self._temps.clear()
        self._scratch.clear()


def geotiff_profile(base: dict[str, Any], *, count: int, dtype: str, nodata: Any) -> dict[str, Any]:
    """A tiled GeoTIFF profile on the stack's grid, for the streamed stand-in of a COG."""
    return {
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
        # Uncompressed: written once and read back once for the COG copy, which compresses
        # (DEFLATE, all cores); compressing here too cost 5-10x the write (see
        # docs/deploy-internals.md). The price is scratch disk space: 5 bytes per pixel (9 more
        # with --probabilities) until the COG is written.
        "BIGTIFF": "IF_SAFER",
    }


def write_cog(source: Path, target: Path, *, resampling: str) -> None:
    """Copy the tiled GeoTIFF ``source`` to ``target`` as a Cloud-Optimised GeoTIFF.

    GDAL's COG driver writes internal overviews (``resampling``: ``nearest`` for categories,
    ``average`` for continuous values) down to one 256² tile, with the overviews before the
    full-resolution data as the COG layout requires. Colour table, nodata and band
    descriptions are copied. ``source`` is removed afterwards.
    """
    import rasterio.shutil

    dtype_is_float = _is_float(source)
    rasterio.shutil.copy(
        source,
        target,
        driver="COG",
        COMPRESS="DEFLATE",
        PREDICTOR="FLOATING_POINT" if dtype_is_float else "YES",
        BLOCKSIZE=256,
        RESAMPLING=resampling,
        OVERVIEW_RESAMPLING=resampling,
        NUM_THREADS="ALL_CPUS",
        BIGTIFF="IF_SAFER",
    )
    source.unlink(missing_ok=True)


def _is_float(path: Path) -> bool:
    import rasterio

    with rasterio.open(path) as ds:
        return np.dtype(ds.dtypes[0]).kind == "f"


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
