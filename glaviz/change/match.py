"""Which glacier at one date is which at the next: by reference id, else by largest overlap.

Each glacier at t1 is linked to the glacier at t0 it overlaps most, and each glacier at t0 to
the glacier at t1 it overlaps most; two glaciers that carry different reference ids are never
linked, and two that carry the same one always are. The connected pieces of these links are the
units of comparison ("groups"): one glacier at each date is ``same``; one at t0 and several at
t1 a ``split``; several at t0 and one at t1 a ``merge`` (several at both: ``split`` when there
are more at t1, else ``merge``); a glacier with no partner ``vanished`` (t0) or is ``new`` (t1).
Overlaps are counted in row strips, so memory stays at the two label rasters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glaviz.change.grid import UnitTable

#: Rows per strip when counting overlaps and measuring.
STRIP_ROWS = 1024


@dataclass
class Matching:
    """Groups of glaciers across one date pair; group ids run from 1."""

    group0: np.ndarray  #: int32, group of each t0 label (index = label; 0 = none)
    group1: np.ndarray  #: int32, group of each t1 label
    members0: list[list[int]]  #: t0 labels of group g at index g - 1
    members1: list[list[int]]
    kinds: list[str]

    @property
    def n_groups(self) -> int:
        return len(self.kinds)


def overlaps(l0: np.ndarray, l1: np.ndarray, n1: int) -> tuple[np.ndarray, ...]:
    """(t0 label, t1 label, pixels) of every pair of glaciers that share pixels."""
    codes, counts = [], []
    for r in range(0, l0.shape[0], STRIP_ROWS):
        a, b = l0[r : r + STRIP_ROWS], l1[r : r + STRIP_ROWS]
        both = (a > 0) & (b > 0)
        code = a[both].astype(np.int64) * (n1 + 1) + b[both]
        u, c = np.unique(code, return_counts=True)
        codes.append(u)
        counts.append(c)
    code = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    count = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    u, inverse = np.unique(code, return_inverse=True)
    total = np.bincount(inverse, weights=count, minlength=len(u)).astype(np.int64)
    return u // (n1 + 1), u % (n1 + 1), total


def match(
    l0: np.ndarray,
    l1: np.ndarray,
    units0: UnitTable,
    units1: UnitTable,
    present0: np.ndarray,
    present1: np.ndarray,
) -> Matching:
    """Group the glaciers of two dates. ``present*``: bool per label (index 0 unused)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n0, n1 = len(units0), len(units1)
    i, j, c = overlaps(l0, l1, n1)
    refs0 = np.array([None, *units0.refs], dtype=object)
    refs1 = np.array([None, *units1.refs], dtype=object)
    r0, r1 = refs0[i], refs1[j]
    allowed = np.array([a is None or b is None or a == b for a, b in zip(r0, r1, strict=True)])
    i, j, c = i[allowed], j[allowed], c[allowed]
    edges = [_best(i, j, c), _best(j, i, c)[::-1]]
    edges.append(_same_refs(refs0, refs1, present0, present1))
    src = np.concatenate([e[0] for e in edges]).astype(np.int64)
    dst = np.concatenate([e[1] for e in edges]).astype(np.int64) + n0
    size = n0 + n1 + 1
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    return _groups(component, n0, n1, present0, present1)


def _best(a: np.ndarray, b: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``b``, the ``a`` it shares most pixels with (ties: the lower label): (a, b)."""
    if not len(a):
        return a, b
    order = np.lexsort((a, -count, b))
    b_sorted = b[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = b_sorted[1:] != b_sorted[:-1]
    return a[order][first], b_sorted[first]


def _same_refs(
    refs0: np.ndarray, refs1: np.ndarray, present0: np.ndarray, present1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Links between present glaciers of the two dates that carry the same reference id."""
    at0: dict[str, list[int]] = {}
    for k in np.flatnonzero(present0):
        if refs0[k] is not None:
            at0.setdefault(refs0[k], []).append(int(k))
    src, dst = [], []
    for k in np.flatnonzero(present1):
        for m in at0.get(refs1[k], []) if refs1[k] is not None else []:
            src.append(m)
            dst.append(int(k))
    return np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64)


def _groups(
    component: np.ndarray, n0: int, n1: int, present0: np.ndarray, present1: np.ndarray
) -> Matching:
    """Number the components that hold a present glacier 1..G, in order of first appearance."""
    comp0, comp1 = component[: n0 + 1], component[n0 + 1 :]
    nodes = np.concatenate([comp0[1:][present0[1:]], comp1[present1[1:]]])
    _, first = np.unique(nodes, return_index=True)
    ordered = nodes[np.sort(first)]
    lookup = np.zeros(component.max() + 1, dtype=np.int32)
    lookup[ordered] = np.arange(1, len(ordered) + 1, dtype=np.int32)
    group0 = np.zeros(n0 + 1, dtype=np.int32)
    group1 = np.zeros(n1 + 1, dtype=np.int32)
    group0[1:][present0[1:]] = lookup[comp0[1:][present0[1:]]]
    group1[1:][present1[1:]] = lookup[comp1[present1[1:]]]
    members0: list[list[int]] = [[] for _ in ordered]
    members1: list[list[int]] = [[] for _ in ordered]
    for k in np.flatnonzero(group0):
        members0[group0[k] - 1].append(int(k))
    for k in np.flatnonzero(group1):
        members1[group1[k] - 1].append(int(k))
    kinds = [kind(len(a), len(b)) for a, b in zip(members0, members1, strict=True)]
    return Matching(group0, group1, members0, members1, kinds)


def kind(n0: int, n1: int) -> str:
    """The match kind of a group with ``n0`` glaciers at t0 and ``n1`` at t1."""
    if n1 == 0:
        return "vanished"
    if n0 == 0:
        return "new"
    if n0 == 1 and n1 == 1:
        return "same"
    if n0 == 1:
        return "split"
    if n1 == 1:
        return "merge"
    return "split" if n1 > n0 else "merge"
