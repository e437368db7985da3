"""Areas, unobserved area and both uncertainties of every group of one date pair.

Areas are geodesic (on the WGS 84 ellipsoid), like glaviz inventory's: the area of each pixel is
computed exactly at nodes every :data:`AREA_STEP` pixels (the pixel's four corners as a polygon,
:func:`glaviz.inventory.attributes.geodesic_area_km2`) and interpolated bilinearly in between,
which is exact to about 1e-8 relative in a UTM zone (the scale factor changes by 1e-6 over a
2.5 km node spacing). A glacier's area at a date counts only the pixels observed at *both*
dates; what either date did not observe is its unobserved area, never a loss.

Uncertainty, per group and pair (see docs/change.md):

* buffer (Paul et al. 2013): ± perimeter × ``buffer_px`` × pixel size at each date, the two
  dates combined in quadrature. Perimeters are the pixel edges of each glacier's outline
  (between a glacier and anything else, divides included), in metres of the working grid.
* confidence: the area of the pixels observed at both dates, inside the group's glaciers or
  touching them (8-neighbours), whose confidence is below 0.5 at either date.

Everything is computed in row strips; the largest temporary is a strip of pixel areas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glaviz.change.match import STRIP_ROWS, Matching
from glaviz.inventory.grid import Grid

#: Pixels between the nodes where the geodesic pixel area is computed exactly.
AREA_STEP = 256
#: Codes of change.tif.
NO_ICE, ICE_BOTH, LOST, GAINED, UNOBSERVED = 0, 1, 2, 3, 255


class PixelAreas:
    """Geodesic area of every pixel of a grid, in km², row strip by row strip."""

    def __init__(self, grid: Grid, step: int = AREA_STEP) -> None:
        self.grid = grid
        self.rows = _nodes(grid.height, step)
        self.cols = _nodes(grid.width, step)
        self.nodes = self._node_areas()
        self._across = _interp_matrix(np.arange(grid.width), self.cols).T  # (nodes, width)

    def _node_areas(self) -> np.ndarray:
        import shapely
        from pyproj import Transformer

        from glaviz.inventory.attributes import geodesic_area_km2

        rr, cc = np.meshgrid(self.rows, self.cols, indexing="ij")
        corners_c = np.stack([cc, cc + 1, cc + 1, cc, cc], axis=-1).astype(np.float64)
        corners_r = np.stack([rr, rr, rr + 1, rr + 1, rr], axis=-1).astype(np.float64)
        t = self.grid.transform
        x = t.c + t.a * corners_c + t.b * corners_r
        y = t.f + t.d * corners_c + t.e * corners_r
        to_lonlat = Transformer.from_crs(self.grid.crs, "EPSG:4326", always_xy=True)
        lon, lat = to_lonlat.transform(x, y)
        rings = np.stack([lon, lat], axis=-1).reshape(-1, 5, 2)
        areas = geodesic_area_km2(shapely.polygons(rings))
        return areas.reshape(rr.shape)

    def strip(self, r0: int, r1: int) -> np.ndarray:
        """Pixel areas of rows ``r0:r1`` (float64, km²)."""
        down = _interp_matrix(np.arange(r0, r1), self.rows)  # (rows, nodes)
        return (down @ self.nodes) @ self._across


def _nodes(n: int, step: int) -> np.ndarray:
    nodes = np.arange(0, n, step)
    return nodes if nodes[-1] == n - 1 else np.append(nodes, n - 1)


def _interp_matrix(points: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Weights (len(points), len(nodes)) of linear interpolation at ``points`` between nodes."""
    weights = np.zeros((len(points), len(nodes)))
    if len(nodes) == 1:
        weights[:, 0] = 1.0
        return weights
    k = np.clip(np.searchsorted(nodes, points, side="right") - 1, 0, len(nodes) - 2)
    span = (nodes[k + 1] - nodes[k]).astype(np.float64)
    f = (points - nodes[k]) / span
    rows = np.arange(len(points))
    weights[rows, k] = 1.0 - f
    weights[rows, k + 1] = f
    return weights


def perimeters_m(labels: np.ndarray, n: int, grid: Grid) -> np.ndarray:
    """Outline length of each label in metres (index = label): its pixel edges facing another
    value or the grid's border."""
    xres, yres = grid.xres, grid.yres
    out = np.zeros(n + 1, dtype=np.float64)
    h = labels.shape[0]
    for r in range(0, h, STRIP_ROWS):
        block = labels[r : r + STRIP_ROWS + 1]  # one row more: the edge to the next strip
        inner = block[: min(STRIP_ROWS, h - r)]
        if r == 0:
            out += np.bincount(inner[0], minlength=n + 1) * xres
        if r + STRIP_ROWS >= h:
            out += np.bincount(inner[-1], minlength=n + 1) * xres
        across = block[1:] != block[:-1]  # horizontal edges between rows
        for side in (block[1:][across], block[:-1][across]):
            out += np.bincount(side, minlength=n + 1) * xres
        along = inner[:, 1:] != inner[:, :-1]  # vertical edges between columns
        for side in (inner[:, 1:][along], inner[:, :-1][along]):
            out += np.bincount(side, minlength=n + 1) * yres
        out += (
            np.bincount(inner[:, 0], minlength=n + 1) + np.bincount(inner[:, -1], minlength=n + 1)
        ) * yres
    out[0] = 0.0
    return out


@dataclass
class PairMeasures:
    """Per group (index = group id; 0 unused) of one date pair, areas in km²."""

    area0: np.ndarray  #: observed at both dates, at t0
    area1: np.ndarray
    whole0: np.ndarray  #: the glaciers' whole area at t0, observed or not at t1
    whole1: np.ndarray
    unobserved: np.ndarray
    perimeter0_m: np.ndarray
    perimeter1_m: np.ndarray
    low_confidence: np.ndarray | None
    codes: np.ndarray  #: uint8 change.tif codes of the pair

    def buffer_km2(self, buffer_px: float, pixel_m: float) -> np.ndarray:
        """Paul et al. (2013) buffer uncertainty, the two dates in quadrature."""
        u0 = self.perimeter0_m * buffer_px * pixel_m / 1e6
        u1 = self.perimeter1_m * buffer_px * pixel_m / 1e6
        return np.hypot(u0, u1)


def measure_pair(
    l0: np.ndarray,
    l1: np.ndarray,
    valid: np.ndarray,
    low: np.ndarray | None,
    matching: Matching,
    areas: PixelAreas,
    perimeters: tuple[np.ndarray, np.ndarray],
) -> PairMeasures:
    """Everything measured per group; ``valid``: observed at both dates; ``low``: low confidence
    at either date (None: no confidence raster at either)."""
    g = matching.n_groups + 1
    sums = {k: np.zeros(g) for k in ("area0", "area1", "whole0", "whole1", "unobserved")}
    low_sum = np.zeros(g) if low is not None else None
    codes = np.empty(l0.shape, dtype=np.uint8)
    h = l0.shape[0]
    for r in range(0, h, STRIP_ROWS):
        r1 = min(r + STRIP_ROWS, h)
        a = areas.strip(r, r1)
        s0, s1, ok = l0[r:r1], l1[r:r1], valid[r:r1]
        g0, g1 = matching.group0[s0], matching.group1[s1]
        foot = np.where(g0 > 0, g0, g1)
        _add(sums["area0"], g0, a, ok)
        _add(sums["area1"], g1, a, ok)
        _add(sums["whole0"], g0, a, None)
        _add(sums["whole1"], g1, a, None)
        _add(sums["unobserved"], foot, a, ~ok)
        codes[r:r1] = strip_codes(s0 > 0, s1 > 0, ok)
        if low_sum is not None and low is not None:
            _low_confidence(low_sum, l0, l1, matching, low, valid, a, r, r1)
    return PairMeasures(
        **sums,
        perimeter0_m=_per_group(perimeters[0], matching.group0, g),
        perimeter1_m=_per_group(perimeters[1], matching.group1, g),
        low_confidence=low_sum,
        codes=codes,
    )


def strip_codes(ice0: np.ndarray, ice1: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """change.tif's codes: 0 no ice, 1 ice at both dates, 2 lost, 3 gained, 255 unobserved."""
    code = np.full(ice0.shape, NO_ICE, dtype=np.uint8)
    code[ice0 & ice1] = ICE_BOTH
    code[ice0 & ~ice1] = LOST
    code[~ice0 & ice1] = GAINED
    code[~valid] = UNOBSERVED
    return code


def _add(out: np.ndarray, groups: np.ndarray, area: np.ndarray, where: np.ndarray | None) -> None:
    keep = groups > 0 if where is None else (groups > 0) & where
    out += np.bincount(groups[keep], weights=area[keep], minlength=len(out))


def _per_group(per_label: np.ndarray, group: np.ndarray, g: int) -> np.ndarray:
    return np.bincount(group, weights=per_label[: len(group)], minlength=g)[:g] * (np.arange(g) > 0)


def _low_confidence(
    out: np.ndarray,
    l0: np.ndarray,
    l1: np.ndarray,
    matching: Matching,
    low: np.ndarray,
    valid: np.ndarray,
    area: np.ndarray,
    r0: int,
    r1: int,
) -> None:
    """Add the area of low-confidence pixels in or touching each group (rows ``r0:r1``).

    A pixel touching two groups counts for both: it is uncertain for each of them.
    """
    target = low[r0:r1] & valid[r0:r1]
    if not target.any():
        return
    h = l0.shape[0]
    top, bottom = max(r0 - 1, 0), min(r1 + 1, h)
    g0 = matching.group0[l0[top:bottom]]
    foot = np.where(g0 > 0, g0, matching.group1[l1[top:bottom]])
    pad = np.zeros((r1 - r0 + 2, foot.shape[1] + 2), dtype=foot.dtype)
    first = top - (r0 - 1)  # pad row p is grid row r0 - 1 + p
    pad[first : first + foot.shape[0], 1:-1] = foot
    rr, cc = np.nonzero(target)
    near = np.stack(
        [pad[rr + 1 + dr, cc + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0
    )
    near.sort(axis=0)
    fresh = np.ones_like(near, dtype=bool)
    fresh[1:] = near[1:] != near[:-1]
    fresh &= near > 0
    weights = np.broadcast_to(area[rr, cc], near.shape)
    out += np.bincount(near[fresh], weights=weights[fresh], minlength=len(out))


def pixel_size_m(grid: Grid) -> float:
    """The pixel size of the buffer method: the side of a square of the pixel's area."""
    return math.sqrt(grid.xres * grid.yres)
