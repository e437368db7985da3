"""The output grid: one projected CRS, square pixels, corners on whole multiples of the pixel size.

By default the CRS is the UTM zone of the AOI centre (north or south by the centre's latitude):
Sentinel-2 tiles are delivered in UTM, so for most AOIs the 10 m bands are copied pixel for
pixel, and slope computed on it is in true metres. Corners are snapped outwards to multiples of
the resolution, which for 10 m is also the lattice of every Sentinel-2 tile (their origins are
multiples of 60 m): a 10 m band in the same zone needs no resampling at all, and two runs over
overlapping AOIs put their pixels on the same lattice.

The zone is :func:`glaviz.acquire.aoi.utm_epsg` of the AOI centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from glaviz.acquire.aoi import utm_epsg
from glaviz.errors import ConfigError

if TYPE_CHECKING:
    from affine import Affine

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: ``crs`` (``"EPSG:N"``), pixel ``resolution``, origin, size."""

    crs: str
    resolution: float
    left: float
    top: float
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        from affine import Affine

        return Affine(self.resolution, 0.0, self.left, 0.0, -self.resolution, self.top)

    @property
    def bounds(self) -> BBox:
        """``(left, bottom, right, top)`` in the grid's CRS."""
        right = self.left + self.width * self.resolution
        bottom = self.top - self.height * self.resolution
        return (self.left, bottom, right, self.top)

    def coarsened(self, factor: int) -> Grid:
        """The same extent at ``factor`` times the pixel size (cloud ranking works at 60 m)."""
        return Grid(
            crs=self.crs,
            resolution=self.resolution * factor,
            left=self.left,
            top=self.top,
            width=max(1, math.ceil(self.width / factor)),
            height=max(1, math.ceil(self.height / factor)),
        )


def target_grid(bbox: BBox, *, epsg: int | None = None, resolution: float = 10.0) -> Grid:
    """The grid that covers the lon/lat ``bbox`` (W,S,E,N) in ``epsg`` (None: UTM of the centre).

    The bbox is projected with its edges densified (a projected box of a lon/lat box is not a
    box), then snapped outwards to multiples of ``resolution``.
    """
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform_bounds

    west, south, east, north = bbox
    code = epsg if epsg is not None else utm_epsg((west + east) / 2, (south + north) / 2)
    try:
        crs = CRS.from_epsg(code)
    except CRSError:
        raise ConfigError(f"crs EPSG:{code} is not a known EPSG code; use auto or EPSG:N") from None
    if not crs.is_projected:
        raise ConfigError(
            f"crs EPSG:{code} is not projected; the grid needs metres (use auto for UTM)"
        )
    left, bottom, right, top = transform_bounds("EPSG:4326", crs, *bbox, densify_pts=21)
    left = math.floor(left / resolution) * resolution
    bottom = math.floor(bottom / resolution) * resolution
    right = math.ceil(right / resolution) * resolution
    top = math.ceil(top / resolution) * resolution
    return Grid(
        crs=f"EPSG:{code}",
        resolution=resolution,
        left=left,
        top=top,
        width=max(1, round((right - left) / resolution)),
        height=max(1, round((top - bottom) / resolution)),
    )
