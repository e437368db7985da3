"""Clean-up on label rasters: noise holes, slivers, and the one connectivity rule.

Connectivity is that of deploy's polygons (``rasterio.features.shapes`` with its default, 4):
two ice pixels belong together when they share an edge. The background is then 8-connected,
so a hole is a background region that no diagonal step connects to the outside. Every function
here is pure numpy/scipy on one complex's crop (holes: the whole mask once), so it is cheap and
testable without files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy import ndimage

#: Ice: pixels sharing an edge (deploy's polygons: rasterio.features.shapes, connectivity 4).
ICE_STRUCTURE = ndimage.generate_binary_structure(2, 1)
#: Background: the dual of 4-connected ice, so holes and polygons agree.
BACKGROUND_STRUCTURE = ndimage.generate_binary_structure(2, 2)


def fill_small_holes(ice: np.ndarray, *, max_pixels: int, keep: np.ndarray | None = None) -> int:
    """Fill, in place, holes in ``ice`` of at most ``max_pixels`` pixels; returns how many.

    A hole is a background region (8-connected) that does not reach the raster's edge. Holes
    containing a ``keep`` pixel (invalid data, outside the scene) are never filled: nothing is
    known about them.
    """
    if max_pixels <= 0:
        return 0
    background, n = ndimage.label(~ice, structure=BACKGROUND_STRUCTURE)
    if n == 0:
        return 0
    sizes = np.bincount(background.ravel(), minlength=n + 1)
    small = sizes <= max_pixels
    small[0] = False
    edge = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    small[np.unique(edge)] = False
    if keep is not None:
        small[np.unique(background[keep])] = False
    small[0] = False
    fill = small[background]
    ice |= fill
    return int(np.count_nonzero(small))


def shared_edges(labels: np.ndarray) -> dict[tuple[int, int], int]:
    """Pixel edges shared by each pair of different, non-zero labels (``a < b``)."""
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        sel = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[sel], b[sel]).astype(np.int64)
        hi = np.maximum(a[sel], b[sel]).astype(np.int64)
        pairs.append(lo * (1 << 32) + hi)
    keys = np.concatenate(pairs) if pairs else np.empty(0, np.int64)
    uniq, counts = np.unique(keys, return_counts=True)
    return {(int(k >> 32), int(k & 0xFFFFFFFF)): int(c) for k, c in zip(uniq, counts, strict=True)}


def _internal_edges(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixel edges inside each label (both sides the same label), indexed by label."""
    out = np.zeros(n + 1, dtype=np.int64)
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        sel = (a == b) & (a > 0)
        out += np.bincount(a[sel].ravel(), minlength=n + 1)[: n + 1]
    return out


SliverTest = Callable[[float, float], bool]


def merge_slivers(
    labels: np.ndarray,
    *,
    is_sliver: SliverTest,
    pixel_area: float,
    pixel_length: float,
    protected: Iterable[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Merge every sliver into the neighbour with which it shares the longest boundary.

    ``is_sliver(area_m2, perimeter_m)`` decides; slivers are merged smallest first, and a merged
    piece is tested again. Protected labels (reference glaciers) are never merged into another
    label, so two of them never become one; unprotected slivers may join them. A sliver with no
    neighbour stays as it is: the glaciers must still cover all of the ice. Labels are
    ``1..n`` (0 = no ice). Returns the relabelled raster, numbered ``1..m``, and the map from
    old to new labels (an array indexed by old label).
    """
    n = int(labels.max()) if labels.size else 0
    if n <= 1:
        return labels.copy(), np.arange(n + 1)
    count = np.bincount(labels.ravel(), minlength=n + 1).astype(np.int64)
    internal = _internal_edges(labels, n)
    adjacency: dict[int, dict[int, int]] = {i: {} for i in range(1, n + 1)}
    for (a, b), c in shared_edges(labels).items():
        adjacency[a][b] = c
        adjacency[b][a] = c
    protect = set(int(p) for p in protected)
    parent = np.arange(n + 1)
    alive = {i for i in range(1, n + 1) if count[i] > 0}

    def sliver(i: int) -> bool:
        perimeter = (4 * count[i] - 2 * internal[i]) * pixel_length
        return i not in protect and is_sliver(count[i] * pixel_area, perimeter)

    while True:
        candidates = [i for i in alive if adjacency[i] and sliver(i)]
        if not candidates:
            break
        small = min(candidates, key=lambda i: (count[i], i))
        into = max(adjacency[small].items(), key=lambda kv: (kv[1], -kv[0]))[0]
        # Merge ``small`` into ``into``: sizes, internal edges and the neighbour lists.
        count[into] += count[small]
        internal[into] += internal[small] + adjacency[small][into]
        for other, edges in adjacency[small].items():
            del adjacency[other][small]
            if other != into:
                adjacency[into][other] = adjacency[into].get(other, 0) + edges
                adjacency[other][into] = adjacency[other].get(into, 0) + edges
        adjacency[small] = {}
        parent[small] = into
        alive.discard(small)
    # Resolve chains of merges, then number the survivors 1..m.
    for i in range(1, n + 1):
        root = i
        while parent[root] != root:
            root = parent[root]
        parent[i] = root
    survivors = sorted(alive)
    newid = np.zeros(n + 1, dtype=np.int32)
    newid[survivors] = np.arange(1, len(survivors) + 1)
    mapping = newid[parent]
    return mapping[labels], mapping


def min_area_rule(min_area_m2: float) -> SliverTest:
    """glaviz's clean-up: anything below ``--min-area`` is a sliver."""
    return lambda area, _perimeter: area < min_area_m2


def kienholz_rule(area_m2: float, compact_area_m2: float, compactness: float) -> SliverTest:
    """Kienholz et al. (2013): small, or somewhat larger and elongated (2·sqrt(πA)/P)."""

    def test(area: float, perimeter: float) -> bool:
        if area < area_m2:
            return True
        ratio = 2.0 * np.sqrt(np.pi * area) / perimeter if perimeter > 0 else 1.0
        return area < compact_area_m2 and ratio < compactness

    return test
