"""The glaciers of each date as labels: complexes, an inventory's glaciers, or reference units.

Without a reference, a date's glaciers are what its input says they are: an inventory's
glaciers (split along its divides), or the 4-connected ice complexes of an outline raster (the
connectivity of deploy's polygons and of glaviz inventory). With ``--reference``, every date is
cut along the reference's divides instead, so each reference glacier is one fixed unit measured
at every date; ice outside every reference glacier becomes new units, one per complex.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from glaviz.change.grid import DateMap, UnitTable, unit_table
from glaviz.inventory.cleanup import ICE_STRUCTURE
from glaviz.inventory.grid import Grid


@dataclass
class ReferenceUnits:
    """A reference inventory rasterised on the working grid (label = row + 1)."""

    raster: np.ndarray  #: int32
    table: UnitTable

    @classmethod
    def read(cls, path: Path, grid: Grid, id_field: str | None) -> ReferenceUnits:
        from glaviz.inventory.grid import ReferenceInventory

        reference = ReferenceInventory(path, grid, id_field)
        raster = reference.rasterize(slice(0, grid.height), slice(0, grid.width))
        table = unit_table(reference.frame, reference.id_field)
        table.ids = [str(v) for v in reference.ids]
        return cls(raster.view(np.int32), table)


def label_date(date: DateMap, reference: ReferenceUnits | None) -> None:
    """Give ``date`` its labels and unit table (in place); its ice mask is dropped after."""
    if reference is not None:
        ice = date.ice if date.labels is None else date.labels > 0
        date.labels, date.units = _reference_labels(ice, reference)
    elif date.labels is None:
        labels, n = ndimage.label(date.ice, structure=ICE_STRUCTURE, output=np.int32)
        date.labels = labels
        date.units = UnitTable(
            [str(k) for k in range(1, n + 1)], [None] * n, [None] * n, [None] * n
        )
    date.ice = np.zeros((0, 0), dtype=bool)  # the labels say it all from here on


def _reference_labels(ice: np.ndarray, ref: ReferenceUnits) -> tuple[np.ndarray, UnitTable]:
    n_ref = len(ref.table)
    labels = np.where(ice, ref.raster, 0).astype(np.int32)
    rest = ice & (ref.raster == 0)
    pieces, k = ndimage.label(rest, structure=ICE_STRUCTURE, output=np.int32)
    labels[rest] = pieces[rest] + n_ref
    t = ref.table
    table = UnitTable(
        [*t.ids, *(f"new-{i}" for i in range(1, k + 1))],
        [*t.refs, *([None] * k)],
        [*t.complexes, *([None] * k)],
        [*t.regions, *([None] * k)],
        t.ref_field,
    )
    return labels, table
