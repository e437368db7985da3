"""Elevation on the output grid: Copernicus GLO-30, with GLO-90 where GLO-30 has no tile.

The Copernicus DEM's 30 m edition (GLO-30) is public for almost the whole globe; a few tiles
(Armenia, Azerbaijan) are released only at 90 m (GLO-90). Tiles are warped onto the output grid
bilinearly and mosaicked GLO-30 first, so a GLO-90 tile fills only what no GLO-30 tile covers.
Heights are metres above the EGM2008 geoid, as the published training data used.

The DEM has no tile over open ocean, and its documentation says to take 0 m there; pixels that
no tile covers are therefore 0 m, and the part of the grid that tiles do cover is counted
(``covered``) so that the record shows it and a run can warn when it is less than all.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.acquire.granule import DemTile
from glaviz.acquire.grid import Grid

#: Mosaic order: the finer product first.
PRODUCT_ORDER = {"GLO-30": 0, "GLO-90": 1}


def ordered(tiles: Sequence[DemTile]) -> list[DemTile]:
    """``tiles`` in mosaic order: GLO-30 before GLO-90, then by item id (reproducible)."""
    return sorted(tiles, key=lambda t: (PRODUCT_ORDER.get(t.product, 9), t.item_id))


class DemReader:
    """The mosaic of DEM files (already in mosaic order) on windows of ``grid``."""

    def __init__(self, stack: ExitStack, paths: Sequence[Path], grid: Grid) -> None:
        import rasterio

        from glaviz.util.rasters import warped_view

        self._vrts: list[Any] = []
        #: Pixels read so far that a tile covers (the rest were set to 0 m).
        self.covered = 0
        for path in paths:
            src = stack.enter_context(rasterio.open(path))
            self._vrts.append(stack.enter_context(warped_view(src, like=grid)))

    def read(self, window: Any) -> np.ndarray:
        """Elevation (h, w) float32; 0 m (sea level) where no tile covers the pixel."""
        out = np.full((int(window.height), int(window.width)), np.nan, dtype=np.float32)
        for vrt in self._vrts:
            values = vrt.read(1, window=window, masked=True).filled(np.nan).astype(np.float32)
            fill = np.isnan(out) & ~np.isnan(values)
            out[fill] = values[fill]
        missing = np.isnan(out)
        self.covered += int(missing.size - missing.sum())
        out[missing] = 0.0
        return out
