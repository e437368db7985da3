"""Deploy's output files and their formats: names, colours, Cloud-Optimised GeoTIFFs, polygons.

The folder itself (lock, temporary names, one commit at the end) is :class:`glaviz.runs.outputs.
OutputFolder`; this module knows only what deploy puts in it. The GeoTIFFs are Cloud-Optimised
(:func:`write_cog`): streamed row by row into a tiled temporary file, then copied once by GDAL's
COG driver, which adds internal overviews (nearest for the outlines, average for the float
outputs) and puts them in the order a web client needs.

Deploy checks the free space against :func:`disk_space_needed` before loading the model (with
:mod:`glaviz.runs.writes`, which also turns every failed write into one error line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import GlavizError
from glaviz.runs.outputs import OutputFolder
from glaviz.runs.writes import write_error

OUTPUT_NAMES: tuple[str, ...] = (
    "outlines.tif",
    "confidence.tif",
    "probabilities.tif",
    "outlines.gpkg",
    "quicklook.png",
    "run.json",
)

#: Outline colours: background transparent, glacier ice blue, nodata transparent.
OUTLINE_COLORS = {0: (0, 0, 0, 0), 1: (0, 170, 255, 255), 255: (0, 0, 0, 0)}


class _DeployFolder(OutputFolder):
    """:class:`OutputFolder` whose creation failures (a read-only parent, a full disk) are one
    :class:`OutputWriteError` naming the folder, not a bare ``PermissionError``."""

    def __enter__(self) -> _DeployFolder:
        try:
            super().__enter__()
        except GlavizError:
            raise
        except OSError as exc:
            raise write_error(self.outdir, exc, what="the output folder") from exc
        return self


def deploy_outputs(outdir: Path, *, overwrite: bool) -> OutputFolder:
    """The output folder of one deploy run (``run.json`` is committed last)."""
    return _DeployFolder(outdir, OUTPUT_NAMES, overwrite=overwrite, command="deploy")


# ----------------------------------------------------------------------------- disk space

#: Bytes per pixel of the streamed stand-ins: outlines (uint8), confidence (float32) and, per
#: class, probabilities (float32).
OUTLINE_BYTES, CONFIDENCE_BYTES, PROBABILITY_BYTES = 1, 4, 4
#: Overviews add at most a third to a COG (each level a quarter of the one before).
OVERVIEW_FACTOR = 4 / 3
#: Room for the polygons, the quicklook and the run record, which the grid does not predict.
DISK_MARGIN = 16 * 2**20


def disk_space_needed(height: int, width: int, *, n_classes: int, probabilities: bool) -> int:
    """Bytes of disk a deploy of a ``height × width`` scene needs at its peak, an upper estimate.

    The streamed files are uncompressed (:func:`geotiff_profile`): 5 bytes per pixel, and 4 per
    class more with ``--probabilities``. Each is copied into its COG and then removed, one after
    the other, so the peak is every stream plus the largest COG, counted here uncompressed with
    its overviews (DEFLATE usually makes it several times smaller), plus :data:`DISK_MARGIN`.
    """
    pixels = height * width
    streams = [pixels * OUTLINE_BYTES, pixels * CONFIDENCE_BYTES]
    if probabilities:
        streams.append(pixels * PROBABILITY_BYTES * n_classes)
    return int(sum(streams) + OVERVIEW_FACTOR * max(streams) + DISK_MARGIN)


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
        # docs/deploy-internals.md). The price is scratch disk space: 5 bytes per pixel (4 per
        # class more with --probabilities) until the COG is written; disk_space_needed() counts
        # it before a run starts.
        "BIGTIFF": "IF_SAFER",
        # Every block is written in a run, so this changes no value; without it GDAL fills the
        # blocks never written with the nodata value when the file is closed: after a failure
        # at the start, 255 into every byte of the outlines stream (40 GB for 200000² pixels).
        "SPARSE_OK": True,
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
