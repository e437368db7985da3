"""The files ``glaviz acquire`` writes into its folder, each streamed window by window.

``optical.tif`` (six float32 bands of reflectance, NaN where invalid or under cloud, a band
description each), ``elevation.tif`` (float32 metres), and ``quicklook.png``: natural colour
with clouds tinted magenta, sampled from the windows as they are written (:class:`Preview`), so
it costs no second read of the scene: a decimated read of a whole-tile optical.tif touches every
block and, with GDAL's default block cache, held 1.3 GB (measured). The stack is written by the
features code (:func:`glaviz.features.compile_stack`), so it is exactly what ``glaviz features``
would make.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.acquire.composite import CLEAR, CLOUD, NO_DATA
from glaviz.acquire.grid import Grid
from glaviz.published.stack_layout import ACQUISITION_DATE_TAG
from glaviz.util.progress import Progress
from glaviz.util.rasters import count_windows, windows

#: Names of the folder's files, the record last.
OUTPUT_NAMES: tuple[str, ...] = (
    "optical.tif",
    "elevation.tif",
    "stack.tif",
    "quicklook.png",
    "acquire.json",
)
RECORD_NAME = "acquire.json"
#: Band descriptions of optical.tif, in the order the published models read them.
OPTICAL_DESCRIPTIONS = ("B02 blue", "B03 green", "B04 red", "B08 nir", "B11 swir1", "B12 swir2")
#: Pixels per side of a processing window: a multiple of the 512-pixel output tiles. Six bands
#: of a window per granule are 25 MB of float32.
WINDOW = 1024
#: Longest side of quicklook.png.
QUICKLOOK_SIDE = 1024
#: Reflectance shown as white in the quicklook; a fixed scale keeps snow white and makes
#: quicklooks of different years comparable (a percentile stretch would not).
QUICKLOOK_WHITE = 0.8
CLOUD_TINT = np.array([255, 0, 255], dtype=np.float32)


@dataclass
class Tally:
    """Counts of the cloud layer's values over the whole grid."""

    clear: int = 0
    cloud: int = 0
    no_data: int = 0

    def add(self, flags: np.ndarray) -> None:
        self.clear += int((flags == CLEAR).sum())
        self.cloud += int((flags == CLOUD).sum())
        self.no_data += int((flags == NO_DATA).sum())

    @property
    def coverage(self) -> float:
        """Part of the grid with data (clear or cloudy)."""
        total = self.clear + self.cloud + self.no_data
        return (self.clear + self.cloud) / total if total else 0.0

    @property
    def cloud_fraction(self) -> float:
        """Part of the covered pixels left NaN because of cloud."""
        covered = self.clear + self.cloud
        return self.cloud / covered if covered else 0.0


def profile(grid: Grid, *, count: int, dtype: str, nodata: Any) -> dict[str, Any]:
    """A tiled, compressed GeoTIFF on ``grid``."""
    return {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "DEFLATE",
        "zlevel": 1,
        "predictor": 3 if dtype.startswith("float") else 2,
        "BIGTIFF": "IF_SAFER",
    }


class Preview:
    """A nearest-neighbour sample of the natural colour and the cloud flags, at most
    :data:`QUICKLOOK_SIDE` px on the long side, collected window by window."""

    def __init__(self, height: int, width: int) -> None:
        scale = min(1.0, QUICKLOOK_SIDE / max(height, width))
        self.rows = _positions(height, max(1, round(height * scale)))
        self.cols = _positions(width, max(1, round(width * scale)))
        self.rgb = np.full((3, self.rows.size, self.cols.size), np.nan, dtype=np.float32)
        self.flags = np.full((self.rows.size, self.cols.size), NO_DATA, dtype=np.uint8)

    def add(self, window: Any, values: np.ndarray, flags: np.ndarray) -> None:
        """Take the sampled pixels that fall in ``window`` (B04, B03, B02 of ``values``)."""
        row0, col0 = int(window.row_off), int(window.col_off)
        r = np.nonzero((self.rows >= row0) & (self.rows < row0 + int(window.height)))[0]
        c = np.nonzero((self.cols >= col0) & (self.cols < col0 + int(window.width)))[0]
        if r.size == 0 or c.size == 0:
            return
        rr, cc = (self.rows[r] - row0)[:, None], (self.cols[c] - col0)[None, :]
        self.rgb[:, r[:, None], c[None, :]] = values[[2, 1, 0]][:, rr, cc]
        self.flags[r[:, None], c[None, :]] = flags[rr, cc]

    def save(self, target: Path) -> None:
        """Write the PNG: reflectance / :data:`QUICKLOOK_WHITE` with a gentle gamma, clouds
        tinted magenta, no data black."""
        from PIL import Image

        scaled = np.clip(np.nan_to_num(self.rgb / QUICKLOOK_WHITE, nan=0.0), 0, 1) ** (1 / 1.5)
        image = np.moveaxis(scaled * 255, 0, -1)
        cloudy = self.flags == CLOUD
        image[cloudy] = 0.5 * image[cloudy] + 0.5 * CLOUD_TINT
        image[self.flags == NO_DATA] = 0
        Image.fromarray(image.round().astype(np.uint8)).save(target, format="PNG")


def _positions(size: int, n: int) -> np.ndarray:
    """``n`` evenly spread pixel positions along a side of ``size``."""
    return np.minimum(((np.arange(n) + 0.5) * (size / n)).astype(np.intp), size - 1)


def write_optical(
    grid: Grid,
    composite: Callable[[Any], tuple[np.ndarray, np.ndarray]],
    *,
    optical: Path,
    radiometry: str,
    acquisition_date: date,
    progress: bool,
) -> tuple[Tally, Preview]:
    """Write ``optical`` from ``composite(window)``; returns the cloud tally and the preview.

    It carries the imagery's date, as the stack does, so a stack that ``glaviz features``
    builds from it later is dated too."""
    import rasterio
    from rasterio.windows import Window

    whole = Window(0, 0, grid.width, grid.height)
    tally, preview = Tally(), Preview(grid.height, grid.width)
    bar = Progress(
        progress, total=count_windows(whole, WINDOW), description="optical", rate_unit="windows"
    )
    grid_profile = profile(grid, count=6, dtype="float32", nodata=np.nan)
    with bar, rasterio.open(optical, "w", **grid_profile) as out:
        for index, text in enumerate(OPTICAL_DESCRIPTIONS, start=1):
            out.set_band_description(index, text)
        out.update_tags(radiometry=radiometry, units="reflectance (0-1)")
        out.update_tags(**{ACQUISITION_DATE_TAG: acquisition_date.isoformat()})
        for window in windows(whole, WINDOW):
            values, flags = composite(window)
            out.write(values, window=window)
            tally.add(flags)
            preview.add(window, values, flags)
            bar.advance()
    return tally, preview


def write_elevation(
    grid: Grid, read: Callable[[Any], np.ndarray], *, target: Path, progress: bool
) -> None:
    """Write ``elevation.tif`` from ``read(window)``."""
    import rasterio
    from rasterio.windows import Window

    whole = Window(0, 0, grid.width, grid.height)
    bar = Progress(
        progress, total=count_windows(whole, WINDOW), description="elevation", rate_unit="windows"
    )
    grid_profile = profile(grid, count=1, dtype="float32", nodata=np.nan)
    with bar, rasterio.open(target, "w", **grid_profile) as out:
        out.set_band_description(1, "elevation (m, EGM2008)")
        for window in windows(whole, WINDOW):
            out.write(read(window), 1, window=window)
            bar.advance()
