"""Which windows deploy computes: those that can change a pixel it writes.

A pixel's blended probabilities are the weighted sum of the windows that cover it, and nothing
else. So a window can be left out without changing any output at a pixel unless it covers that
pixel. Two rules use this:

- **skip empty**: a window with no valid input pixel (all no-data, non-finite, masked: the
  reader's validity) only covers pixels that are written as nodata, so it is not computed.
- **region of interest**: a window that does not meet the region only covers pixels that are
  written as not mapped, so it is not computed.

Both rules look at a window grown by ``halo`` pixels: with ``--smoothing N`` a pixel's outline is
the median of its neighbours' argmax up to ``N // 2`` pixels away, and those neighbours' windows
matter to it too. With that, every valid pixel inside the region is computed from exactly the
windows a full run uses, in the same order: outlines are identical, and probabilities differ at
most by what a different batch composition does to the model's arithmetic.

Validity arrives with the reader's rows, so the decision for a window row waits until the reader
has read every row that the row's grown windows cover (with ``halo`` 0: the rows read for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glaviz.engine.reader import SceneRows
from glaviz.engine.tiling import TileGrid, column_hits, window_spans


def rows_to_read(grid: TileGrid, allowed: np.ndarray | None, halo: int = 0) -> np.ndarray | None:
    """``(height,)`` bool: the scene rows that a window allowed by the region of interest covers,
    grown by ``halo`` (the reader need not read the others). None when every row is needed."""
    if allowed is None:
        return None
    row_spans, _ = window_spans(grid, halo)
    needed = np.zeros(grid.height, bool)
    for (a, b), row in zip(row_spans, allowed, strict=True):
        if row.any():
            needed[a:b] = True
    return needed


@dataclass
class SelectionCounts:
    """Windows of the grid: computed, and left out by each rule (no valid pixel counts first)."""

    computed: int = 0
    no_valid_pixel: int = 0
    outside_roi: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "computed": self.computed,
            "skipped_no_valid_pixel": self.no_valid_pixel,
            "skipped_outside_roi": self.outside_roi,
        }


class WindowSelection:
    """Decides, window row by window row, which windows the loop sends to the model.

    ``allowed``: ``(window rows, window columns)`` bool, the windows that meet the region of
    interest (None: every window). ``skip_empty``: also leave out windows with no valid pixel.
    ``halo``: see the module docstring.
    """

    def __init__(
        self,
        grid: TileGrid,
        *,
        allowed: np.ndarray | None = None,
        skip_empty: bool = True,
        halo: int = 0,
    ) -> None:
        self.grid = grid
        self.allowed = allowed
        self.skip_empty = skip_empty
        self.counts = SelectionCounts()
        self._row_spans, self._col_spans = window_spans(grid, halo)
        self._valid = np.zeros((0, grid.width), bool)  # validity of scene rows from _start
        self._start = 0
        self._finished = False

    def note(self, rows: SceneRows | None) -> None:
        """The validity of scene rows just read (in order). A source that reports none (None)
        gives nothing to skip by."""
        if rows is None:
            self.skip_empty = False
        elif len(rows) and self.skip_empty:
            if rows.start != self._start + len(self._valid):
                raise RuntimeError(
                    f"internal: scene rows from {rows.start} after rows up to "
                    f"{self._start + len(self._valid)}"
                )
            self._valid = np.concatenate([self._valid, rows.valid])

    def finish(self) -> None:
        """The reader is done: every row there is, is known."""
        self._finished = True

    def ready(self, k: int) -> bool:
        """Whether window row ``k`` can be decided now."""
        if not self.skip_empty or self._finished:
            return True
        return self._start + len(self._valid) >= self._row_spans[k][1]

    def keep(self, k: int) -> np.ndarray:
        """``(window columns,)`` bool: the windows of row ``k`` to compute (call in row order)."""
        n = len(self._col_spans)
        keep = np.ones(n, bool) if self.allowed is None else self.allowed[k].copy()
        outside = n - int(np.count_nonzero(keep))
        if self.skip_empty:
            keep &= self._valid_hits(k)
        self.counts.outside_roi += outside
        self.counts.no_valid_pixel += n - outside - int(np.count_nonzero(keep))
        self.counts.computed += int(np.count_nonzero(keep))
        return keep

    def _valid_hits(self, k: int) -> np.ndarray:
        a, b = self._row_spans[k]
        if a > self._start:  # row spans only move down: rows above ``a`` are done with
            self._valid = self._valid[a - self._start :]
            self._start = a
        valid = self._valid[a - self._start : b - self._start]
        if not len(valid):
            return np.zeros(len(self._col_spans), bool)
        return column_hits(valid.any(axis=0), self._col_spans)
