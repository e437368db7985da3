"""From fetched granules to one optical scene on the output grid, window by window.

Each granule's six bands are warped onto the output grid (:class:`GranuleReader`): a 10 m band
on the grid's own lattice and CRS is copied pixel for pixel (nearest), anything else, B11 and
B12 always, is resampled bilinearly. DNs become reflectance with the product's own constants
(:mod:`glaviz.acquire.toa`). A pixel is valid only where all six bands are.

- ``best``: the granules of one date, mosaicked: each pixel from the first granule that has it
  clear of cloud (:func:`mosaic`).
- ``median``: the per-pixel median over the chosen dates of their mosaics, cloudy pixels left
  out (:func:`median`).

Where no date has a clear value the pixel is NaN; its flag in the cloud layer
(:data:`CLEAR`, :data:`CLOUD`, :data:`NO_DATA`) tells cloud from outside the data, for the
quicklook and the record. Memory is a few arrays of one window per granule.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.acquire.clouds import CloudMask, mask_kind
from glaviz.acquire.granule import OPTICAL_BANDS, Granule
from glaviz.acquire.grid import Grid
from glaviz.acquire.metadata import Radiometry
from glaviz.acquire.toa import NODATA_DN, band_reflectance

#: Values of the cloud layer.
CLEAR, CLOUD, NO_DATA = 0, 1, 255


@dataclass(frozen=True)
class GranuleFiles:
    """A granule with every part of it as a local file, and its radiometric constants."""

    granule: Granule
    bands: Mapping[str, Path]
    radiometry: Radiometry
    cloud_mask: Path | None


class GranuleReader:
    """The six bands (reflectance) and the cloud flags of one granule on windows of a grid."""

    def __init__(self, stack: ExitStack, files: GranuleFiles, grid: Grid) -> None:
        import rasterio

        self.files = files
        self._vrts = []
        for band in OPTICAL_BANDS:
            src = stack.enter_context(rasterio.open(files.bands[band]))
            self._vrts.append(stack.enter_context(_onto(src, grid)))
        self._mask = (
            CloudMask(stack, files.cloud_mask, grid, kind=mask_kind(str(files.cloud_mask)))
            if files.cloud_mask is not None
            else None
        )

    def read(self, window: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(values, cloud)``: reflectance (6, h, w) float32, NaN unless all six bands are
        valid; cloud flags (h, w) bool."""
        values = np.stack(
            [
                band_reflectance(vrt.read(1, window=window), self.files.radiometry, band)
                for band, vrt in zip(OPTICAL_BANDS, self._vrts, strict=True)
            ]
        )
        values[:, np.isnan(values).any(axis=0)] = np.nan
        if self._mask is None:
            return values, np.zeros(values.shape[1:], dtype=bool)
        return values, self._mask.read(window)


def _onto(src: Any, grid: Grid) -> Any:
    """``src`` warped onto ``grid``: nearest when its pixels are the grid's own, else bilinear."""
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    same = (
        src.crs == CRS.from_user_input(grid.crs)
        and abs(src.res[0] - grid.resolution) < 1e-6
        and abs(src.res[1] - grid.resolution) < 1e-6
        and abs((src.transform.c - grid.left) / grid.resolution % 1) < 1e-6
        and abs((src.transform.f - grid.top) / grid.resolution % 1) < 1e-6
    )
    return WarpedVRT(
        src,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        src_nodata=NODATA_DN if src.nodata is None else src.nodata,
        nodata=NODATA_DN,
        resampling=Resampling.nearest if same else Resampling.bilinear,
    )


def mosaic(readers: Sequence[GranuleReader], window: Any) -> tuple[np.ndarray, np.ndarray]:
    """One date's granules on ``window``: each pixel from the first granule clear there.

    Returns ``(values, flags)``: reflectance with NaN where no granule is clear, and the
    cloud layer (:data:`CLEAR`, :data:`CLOUD`, :data:`NO_DATA`).
    """
    shape = (int(window.height), int(window.width))
    out = np.full((len(OPTICAL_BANDS), *shape), np.nan, dtype=np.float32)
    seen_cloud = np.zeros(shape, dtype=bool)
    for reader in readers:
        values, cloud = reader.read(window)
        valid = ~np.isnan(values[0])
        take = valid & ~cloud & np.isnan(out[0])
        out[:, take] = values[:, take]
        seen_cloud |= valid & cloud
    return out, _flags(out, seen_cloud)


def median(dates: Sequence[Sequence[GranuleReader]], window: Any) -> tuple[np.ndarray, np.ndarray]:
    """The per-pixel median over ``dates`` (each a list of one date's granules), clouds left out.

    Pixels clear on no date are NaN, flagged cloud when some date saw them under cloud.
    """
    mosaics, clouds = [], []
    for readers in dates:
        values, flags = mosaic(readers, window)
        mosaics.append(values)
        clouds.append(flags == CLOUD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: NaN is the answer
        out = np.nanmedian(np.stack(mosaics), axis=0).astype(np.float32)
    return out, _flags(out, np.any(clouds, axis=0))


def _flags(values: np.ndarray, seen_cloud: np.ndarray) -> np.ndarray:
    flags = np.full(values.shape[1:], NO_DATA, dtype=np.uint8)
    valid = ~np.isnan(values[0])
    flags[valid] = CLEAR
    flags[~valid & seen_cloud] = CLOUD
    return flags
