"""Generated glacier landscapes with known ice divides, for tests and benchmarks/inventory.py.

Each cell of a jittered lattice holds one *dome*: an ice cap on a summit with two to five valley
glaciers radiating from it. Elevation falls with the distance ``r`` from the summit and, across
each valley, towards the valley's axis; it depends on the distance to the *nearest* axis only,
so the ridge between two valleys — the true ice divide — is exactly their angular bisector. The
reference glaciers are the ice pixels grouped by nearest axis. Rows are generated in blocks, so
a 10980 × 10980 scene never needs more than a few blocks of float64 at once.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.transform import from_origin


def _domes(
    n_cells: int, spacing: int, px: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    k = 5
    n_valleys = rng.integers(2, k + 1, size=n_cells)
    angles = np.full((n_cells, k), np.nan)
    for i, m in enumerate(n_valleys):
        base = rng.uniform(0, 2 * np.pi)
        gaps = rng.uniform(0.6, 1.4, size=m)
        angles[i, :m] = base + np.cumsum(gaps / gaps.sum() * 2 * np.pi)
    half = spacing * px / 2
    return {
        "cy": rng.uniform(-0.08, 0.08, n_cells) * spacing + spacing / 2,
        "cx": rng.uniform(-0.08, 0.08, n_cells) * spacing + spacing / 2,
        "z0": rng.uniform(2800, 4200, n_cells),
        "core": rng.uniform(0.18, 0.3, n_cells) * half,
        "angles": angles,
        "length": rng.uniform(0.55, 0.8, (n_cells, k)) * half,
        "width": rng.uniform(0.05, 0.09, (n_cells, k)) * half,
    }


def dome_rows(
    rows: slice, *, size: int, spacing: int, px: float, domes: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (int32, 0 = no ice) and elevations (float32) of a block of rows."""
    per_row = size // spacing + (size % spacing > 0)
    yy, xx = np.mgrid[rows, 0:size]
    cell = (yy // spacing) * per_row + xx // spacing
    dy = (yy - (yy // spacing) * spacing - domes["cy"][cell]) * px
    dx = (xx - (xx // spacing) * spacing - domes["cx"][cell]) * px
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    diff = np.abs((theta[..., None] - domes["angles"][cell] + np.pi) % (2 * np.pi) - np.pi)
    diff = np.where(np.isnan(diff), np.inf, diff)
    nearest = np.argmin(diff, axis=-1)
    across = r * np.take_along_axis(diff, nearest[..., None], axis=-1)[..., 0]
    width = np.take_along_axis(domes["width"][cell], nearest[..., None], axis=-1)[..., 0]
    length = np.take_along_axis(domes["length"][cell], nearest[..., None], axis=-1)[..., 0]
    dem = domes["z0"][cell] - 0.25 * r - 150.0 * np.exp(-((across / (2 * width)) ** 2))
    ice = (r < domes["core"][cell]) | ((across < width) & (r < length))
    labels = np.where(ice, cell * 8 + nearest + 1, 0).astype(np.int32)
    return labels, dem.astype(np.float32)


def dome_scene(
    *, size: int, px: float, origin: tuple[float, float], seed: int = 0, spacing: int | None = None
) -> tuple[np.ndarray, np.ndarray, Affine]:
    """A whole scene in memory: labels of the true glaciers, the DEM, the transform."""
    spacing = spacing or size // 2
    per_row = size // spacing + (size % spacing > 0)
    domes = _domes(per_row * per_row, spacing, px, np.random.default_rng(seed))
    labels, dem = dome_rows(slice(0, size), size=size, spacing=spacing, px=px, domes=domes)
    return labels, dem, from_origin(origin[0], origin[1], px, px)


def test_reference_divides_are_on_the_ridges() -> None:
    """Water crosses a reference divide only on the divide itself: an ice pixel whose lowest
    neighbour lies in another glacier always sits next to that divide."""
    labels, dem, _ = dome_scene(size=160, px=20.0, origin=(0.0, 0.0), seed=1, spacing=160)
    assert len(np.unique(labels[labels > 0])) >= 2
    z = np.pad(dem.astype(np.float64), 1, constant_values=np.inf)
    lab = np.pad(labels, 1)
    h, w = labels.shape
    best = np.full((h, w), np.inf)
    target = np.zeros((h, w), np.int32)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == dc == 0:
                continue
            zn = z[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
            slope = (zn - dem) / np.hypot(dr, dc)
            lower = slope < best
            best = np.where(lower, slope, best)
            target = np.where(lower, lab[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w], target)
    ice = labels > 0
    crossing = ice & (best < 0) & (target > 0) & (target != labels)
    from scipy import ndimage

    near_divide = np.zeros_like(ice)
    for other in np.unique(labels[labels > 0]):
        grown = ndimage.binary_dilation(labels == other, structure=np.ones((3, 3)))
        near_divide |= grown & ice & (labels != other)
    assert crossing.any()  # the bisector's pixels do drain across: the check has teeth
    assert not (crossing & ~near_divide).any()
