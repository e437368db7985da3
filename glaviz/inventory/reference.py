"""Copy the divides of a reference inventory onto new ice: a marker watershed on the DEM.

The reference glaciers, cut to the new ice, are the markers. scikit-image's watershed then
floods the rest of the complex from the lowest ground upwards, so ice the reference did not
cover (an advance, a different outline) joins the glacier it drains from, and two markers meet
on the highest ground between them: the ice divide. (massive_ice_divides floods the negated
DEM instead, which puts the boundary in the valley between two markers.) Ice that no marker
reaches — a patch touching no reference glacier — becomes a new glacier, one per 4-connected
piece.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from glaviz.inventory.cleanup import ICE_STRUCTURE
from glaviz.inventory.flowsheds import z_for_watershed


def reference_split(
    complex_mask: np.ndarray, dem: np.ndarray, markers: np.ndarray
) -> tuple[np.ndarray, list[int | None]]:
    """Label the complex's pixels with reference glaciers and new pieces.

    ``markers`` holds reference numbers (0 = none) on the same crop. Returns labels ``1..n`` and,
    per label ``i``, the reference number at ``refs[i - 1]`` (``None`` for a new glacier).
    """
    from skimage.segmentation import watershed

    seeds = np.where(complex_mask, markers, 0)
    if seeds.any():
        assigned = watershed(
            z_for_watershed(dem), markers=seeds.astype(np.int64), mask=complex_mask, connectivity=1
        )
    else:
        assigned = np.zeros(complex_mask.shape, dtype=np.int64)
    present = np.unique(assigned[assigned > 0])
    labels = np.zeros(complex_mask.shape, dtype=np.int32)
    refs: list[int | None] = []
    if present.size:
        lookup = np.zeros(int(present.max()) + 1, dtype=np.int32)
        lookup[present] = np.arange(1, present.size + 1)
        labels = lookup[assigned]
        refs.extend(int(p) for p in present)
    rest = complex_mask & (labels == 0)
    if rest.any():
        pieces, m = ndimage.label(rest, structure=ICE_STRUCTURE)
        labels[rest] = pieces[rest] + len(refs)
        refs.extend([None] * m)
    return labels, refs
