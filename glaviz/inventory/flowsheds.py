"""Kienholz et al. (2013): split a glacier complex along its ice divides from a DEM alone.

The idea of the paper, step by step, on one complex's crop (all lengths in metres):

1. A *gutter* — a ring ``gutter_distance_m`` outside the outline, ``gutter_width_m`` wide — is
   lowered by ``gutter_depth_m``, so that all ice drains into it and leaves it only where the
   outline is locally lowest.
2. The DEM is conditioned with pyflwdir's priority-flood (Wang & Liu 2006): pits are filled and
   the gutter is the outlet region, so every cell inside it drains to the gutter. Within the
   gutter, each cell passes its water on to its steepest lower gutter neighbour (D8); the gutter
   cells with no lower neighbour are where water leaves the complex.
3. D8 flow accumulation; those outlets are the *pour points*. A pour point whose merge radius
   could not even reach the ice is dropped (massive_ice_divides' threshold).
4. Each pour point's catchment inside the complex is a *flowshed*. Ice that drains to no pour
   point joins a neighbouring flowshed along the DEM (marker watershed).
5. Flowsheds that belong to one glacier are merged: around each pour point a circle of radius
   ``r = min(radius_max_m, radius_a · N^radius_b)`` (N: accumulation in 40 m cells) is cut
   with the complex; every flowshed that the part of it nearest to the pour point touches
   joins the pour point's flowshed.
6. Slivers are merged into the neighbour with the longest shared boundary (areas < 0.1 km², or
   < 0.2 km² and elongated).

The paper lets water run along a continuous, filled gutter and leave the DEM at its edge;
filling that gutter can flood a glacier tongue by up to the gutter depth. Here the gutter cells
are the outlets and route water between themselves by their own (lowered) elevation, which
keeps the paper's effect — pour points where the outline is locally lowest — without the flood.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from glaviz.inventory.cleanup import (
    BACKGROUND_STRUCTURE,
    ICE_STRUCTURE,
    kienholz_rule,
    merge_slivers,
)

#: pyflwdir's D8 codes for (drow, dcol) and its pit / nodata values.
D8_CODES = {
    (0, 1): 1,
    (1, 1): 2,
    (1, 0): 4,
    (1, -1): 8,
    (0, -1): 16,
    (-1, -1): 32,
    (-1, 0): 64,
    (-1, 1): 128,
}
D8_PIT, D8_NODATA = 0, 247
_NODATA = -9999.0


@dataclass(frozen=True)
class KienholzParams:
    """The method's parameters, in metres and km².

    No defaults here: they, and the literature each comes from, are the fields of
    :class:`~glaviz.config.inventory.InventoryConfig`, from which the engine builds this.
    """

    gutter_distance_m: float
    gutter_width_m: float
    gutter_depth_m: float
    radius_a: float
    radius_b: float
    radius_max_m: float
    radius_cell_m: float
    sliver_area_km2: float
    sliver_compact_area_km2: float
    sliver_compactness: float

    @classmethod
    def from_config(cls, config: Any = None) -> KienholzParams:
        """The parameters of an inventory configuration; ``None``: the configuration's defaults."""
        from glaviz.config.inventory import InventoryConfig

        fields = InventoryConfig.model_fields
        return cls(
            **{
                name: getattr(config, name) if config is not None else fields[name].default
                for name in cls.__dataclass_fields__
            }
        )

    def radius(self, accumulation_m2: float | np.ndarray) -> float | np.ndarray:
        """The merge radius in metres of a pour point draining ``accumulation_m2``."""
        cells = np.asarray(accumulation_m2, dtype=np.float64) / self.radius_cell_m**2
        return np.minimum(self.radius_max_m, self.radius_a * cells**self.radius_b)

    @property
    def margin_m(self) -> float:
        """How far beyond the outline the method looks (the gutter's outer edge)."""
        return self.gutter_distance_m + self.gutter_width_m


@dataclass
class Split:
    """A complex split into glaciers, with the intermediate steps (for plots and checks)."""

    labels: np.ndarray  #: int32, 1..n glaciers, 0 outside the complex
    flowsheds: np.ndarray = field(repr=False)  #: int32 flowsheds before merging
    pour_points: list[tuple[int, int, float, float]] = field(default_factory=list)
    """(row, col, accumulation m², radius m) of every pour point kept."""


def kienholz_split(
    complex_mask: np.ndarray,
    dem: np.ndarray,
    *,
    xres: float,
    yres: float,
    params: KienholzParams,
) -> Split:
    """Split one complex (bool crop with room for the gutter) along flowshed divides."""
    import pyflwdir
    from skimage.segmentation import watershed

    ones = complex_mask.astype(np.int32)
    finite = np.isfinite(dem)
    if not (finite & complex_mask).any():
        return Split(ones, ones.copy())
    # Holes are nunataks: their rock drains into the ice, so the gutter is only outside.
    solid = ndimage.binary_fill_holes(complex_mask, structure=BACKGROUND_STRUCTURE)
    dist = ndimage.distance_transform_edt(~solid, sampling=(yres, xres))
    inner = params.gutter_distance_m
    outer = inner + max(params.gutter_width_m, max(xres, yres))
    domain = dist <= outer
    gutter = domain & (dist > inner)
    border = np.zeros_like(domain)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    outlet = gutter | (domain & border)  # the scene's edge is an outlet too
    if not outlet.any():
        return Split(ones, ones.copy())

    z = _filled_nan(dem, finite).astype(np.float64)
    z[gutter] -= params.gutter_depth_m
    z[~domain] = _NODATA
    _, d8 = pyflwdir.dem.fill_depressions(
        z, nodata=_NODATA, idxs_pit=np.flatnonzero(outlet), connectivity=8
    )
    d8 = d8.copy()
    d8[outlet] = _gutter_directions(z, outlet, xres, yres)[outlet]
    d8[~domain] = D8_NODATA
    flw = pyflwdir.from_array(d8, ftype="d8", check_ftype=False)
    accumulation = flw.upstream_area(unit="cell").astype(np.float64) * xres * yres

    pits = outlet & (d8 == D8_PIT)
    rows, cols = np.nonzero(pits)
    acc = accumulation[rows, cols]
    radius = params.radius(acc)
    keep = radius > dist[rows, cols]  # a radius that cannot reach the ice merges nothing
    rows, cols, acc, radius = rows[keep], cols[keep], acc[keep], radius[keep]
    if rows.size == 0:
        return Split(ones, ones.copy())
    order = np.argsort(-acc, kind="stable")
    rows, cols, acc, radius = rows[order], cols[order], acc[order], radius[order]
    idxs = np.ravel_multi_index((rows, cols), d8.shape)
    basins = flw.basins(idxs=idxs, ids=np.arange(1, idxs.size + 1, dtype=np.uint32))
    flowsheds = np.where(complex_mask, basins, 0).astype(np.int32)
    if not flowsheds.any():
        return Split(ones, ones.copy())
    # Ice draining to no pour point joins a neighbouring flowshed, across the lowest ground.
    flowsheds = watershed(
        z_for_watershed(dem, finite), markers=flowsheds, mask=complex_mask, connectivity=1
    ).astype(np.int32)

    groups = _merge_by_radius(flowsheds, complex_mask, rows, cols, radius, xres, yres)
    labels = groups[flowsheds]
    labels, _ = merge_slivers(
        labels,
        is_sliver=kienholz_rule(
            params.sliver_area_km2 * 1e6,
            params.sliver_compact_area_km2 * 1e6,
            params.sliver_compactness,
        ),
        pixel_area=xres * yres,
        pixel_length=float(np.sqrt(xres * yres)),
    )
    points = [
        (int(r), int(c), float(a), float(rad))
        for r, c, a, rad in zip(rows, cols, acc, radius, strict=True)
    ]
    return Split(labels.astype(np.int32), flowsheds, points)


def z_for_watershed(dem: np.ndarray, finite: np.ndarray | None = None) -> np.ndarray:
    """The DEM as a watershed image: missing elevations are flooded last."""
    finite = np.isfinite(dem) if finite is None else finite
    if not finite.any():
        return np.zeros(dem.shape, dtype=np.float64)
    top = float(np.nanmax(dem[finite])) + 1.0
    return np.where(finite, dem, top).astype(np.float64)


def _filled_nan(dem: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Missing elevations take the nearest valid one, so water can still cross them."""
    if finite.all():
        return dem
    _, (ri, ci) = ndimage.distance_transform_edt(~finite, return_indices=True)
    return dem[ri, ci]


def _gutter_directions(z: np.ndarray, outlet: np.ndarray, xres: float, yres: float) -> np.ndarray:
    """D8 codes moving water along the gutter to its steepest lower gutter neighbour, else pit."""
    h, w = z.shape
    best = np.zeros((h, w), dtype=np.float64)
    codes = np.full((h, w), D8_PIT, dtype=np.uint8)
    padded_z = np.pad(z, 1, constant_values=np.inf)
    padded_o = np.pad(outlet, 1, constant_values=False)
    for (dr, dc), code in D8_CODES.items():
        zn = padded_z[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        on = padded_o[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        drop = (z - zn) / np.hypot(dr * yres, dc * xres)
        better = on & (drop > best)
        best = np.where(better, drop, best)
        codes = np.where(better, np.uint8(code), codes)
    return codes


def _merge_by_radius(
    flowsheds: np.ndarray,
    complex_mask: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    radius: np.ndarray,
    xres: float,
    yres: float,
) -> np.ndarray:
    """Union of flowsheds touched by each pour point's circle; returns a map old id → group."""
    n = max(int(flowsheds.max()), int(rows.size))
    parent = np.arange(n + 1)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    h, w = flowsheds.shape
    for k in range(rows.size):
        r, c, rad = int(rows[k]), int(cols[k]), float(radius[k])
        dr, dc = int(np.ceil(rad / yres)), int(np.ceil(rad / xres))
        r0, r1, c0, c1 = max(r - dr, 0), min(r + dr + 1, h), max(c - dc, 0), min(c + dc + 1, w)
        yy, xx = np.mgrid[r0:r1, c0:c1]
        d = np.hypot((yy - r) * yres, (xx - c) * xres)
        circle = (d <= rad) & complex_mask[r0:r1, c0:c1]
        if not circle.any():
            continue
        parts, m = ndimage.label(circle, structure=ICE_STRUCTURE)
        if m > 1:
            nearest = ndimage.minimum(d, parts, index=np.arange(1, m + 1))
            circle = parts == int(np.argmin(nearest)) + 1
        touched = np.unique(flowsheds[r0:r1, c0:c1][circle])
        touched = touched[touched > 0]
        own = k + 1  # flowshed ids follow the pour point order
        for t in touched:
            a, b = find(own), find(int(t))
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = np.array([find(i) for i in range(n + 1)])
    uniq, groups = np.unique(roots, return_inverse=True)
    if uniq[0] != 0:  # id 0 (no ice) must stay 0
        groups = groups + 1
    return groups.astype(np.int32)
