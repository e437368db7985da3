"""Gaussian blending of window predictions, whole-scene and as a rolling buffer of window rows.

The published deploy accumulates ``weight × softmax`` and ``weight`` for every window into two
float64 arrays the size of the padded scene, then divides. :func:`blend_in_memory` does exactly
that and is the reference. :class:`RowBlender` gives the same numbers while holding only one
window row's height of the padded scene: window row ``k`` covers padded rows
``k·stride … k·stride + patch``, so once it is added no later window touches the rows above
``(k + 1)·stride`` and they can be divided, cropped and handed out.

Both accumulate in float64, window by window in the published order (row by row, left to right),
so every pixel sees the same additions in the same order: the two results are bit-identical, and
equal to the published blend before its final cast to float32.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike

from glaviz.engine.tiling import TileGrid, window_weights
from glaviz.errors import InputError

__all__ = ["RowBlender", "blend_in_memory"]

#: Accumulator precision of the published pipeline (``np.zeros`` default); float32 sums would drift
#: from the reference by more than its 2e-5 mean tolerance on large overlaps.
ACCUMULATOR_DTYPE = np.float64


def blend_in_memory(
    grid: TileGrid,
    window_probs: Callable[[int, int], np.ndarray],
    *,
    dtype: DTypeLike = np.float32,
    blend: str = "gaussian",
) -> np.ndarray:
    """Blend a whole scene at once, as the published pipeline does (reference implementation).

    ``window_probs(row_origin, col_origin)`` returns the model's softmax for the window at that
    padded origin, shape ``(patch, patch, n_classes)``. Returns ``(height, width, n_classes)``
    cropped to the scene. Memory grows with the padded scene area: use :class:`RowBlender` for
    real scenes.
    """
    weights = window_weights(grid.patch, blend)[..., np.newaxis]
    weighted: np.ndarray | None = None
    counts = np.zeros((grid.padded_height, grid.padded_width, 1), dtype=ACCUMULATOR_DTYPE)
    for _, _, row, col in grid.windows():
        probs = _check_probs(window_probs(row, col), grid.patch)
        if weighted is None:
            shape = (grid.padded_height, grid.padded_width, probs.shape[-1])
            weighted = np.zeros(shape, dtype=ACCUMULATOR_DTYPE)
        rows, cols = slice(row, row + grid.patch), slice(col, col + grid.patch)
        weighted[rows, cols] += weights * probs
        counts[rows, cols] += weights
    assert weighted is not None  # a grid always has at least one window
    blended = weighted / counts
    return blended[grid.scene_rows, grid.scene_cols].astype(dtype)


class RowBlender:
    """Blend window rows into a rolling buffer and release scene rows as soon as they are final.

    Feed window rows in order with :meth:`add_row`, collect finished scene rows with
    :meth:`pop_finished` after each, and the remainder with :meth:`finish`. The buffer holds
    ``patch`` padded rows × padded width × (classes + 1) float64 values; released rows (at most
    ``stride`` per window row) are float32 by default. The scene height never enters.
    """

    def __init__(
        self,
        grid: TileGrid,
        n_classes: int,
        *,
        dtype: DTypeLike = np.float32,
        blend: str = "gaussian",
    ) -> None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
            raise InputError(f"n_classes must be a positive integer, got {n_classes!r}")
        self.grid = grid
        self.n_classes = n_classes
        self.dtype = np.dtype(dtype)
        self._weights = window_weights(grid.patch, blend)
        self._weights3 = self._weights[..., np.newaxis]
        shape = (grid.patch, grid.padded_width)
        self._weighted = np.zeros((*shape, n_classes), dtype=ACCUMULATOR_DTYPE)
        self._counts = np.zeros(shape, dtype=ACCUMULATOR_DTYPE)
        self._buffer_start = 0  # padded row held in buffer row 0
        self._next_row = 0  # the window row add_row expects next
        self._ready: list[np.ndarray] = []
        self._ready_start: int | None = None  # scene row of the first array in _ready

    @property
    def buffer_nbytes(self) -> int:
        """Bytes held by the accumulators (for memory reports; excludes released rows)."""
        return self._weighted.nbytes + self._counts.nbytes

    @property
    def done(self) -> bool:
        """True once every window row has been added."""
        return self._next_row == len(self.grid.row_origins)

    def add_row(self, k: int, probs: np.ndarray, keep: np.ndarray | None = None) -> None:
        """Add window row ``k``: softmax of shape ``(n_col_windows, patch, patch, n_classes)``.

        ``keep``: ``(n_col_windows,)`` bool, the windows that were computed; ``probs`` then holds
        only those, left to right. A window left out adds nothing: pixels that no computed
        window covers come out as NaN, every other pixel as the blend of the windows computed.
        """
        grid = self.grid
        if k != self._next_row:
            raise InputError(
                f"window rows must be added in order 0, 1, 2, …: expected row {self._next_row}, "
                f"got {k} (grid has {len(grid.row_origins)} window rows)"
            )
        columns = list(enumerate(grid.col_origins))
        if keep is not None:
            columns = [c for c, kept in zip(columns, keep, strict=True) if kept]
        expected = (len(columns), grid.patch, grid.patch, self.n_classes)
        if probs.shape != expected:
            raise InputError(
                f"window row {k} has shape {probs.shape}, expected {expected} "
                "(one softmax per column window); check the model's patch size and classes"
            )
        row = grid.row_origins[k]
        self._advance_to(row)
        top = row - self._buffer_start
        rows = slice(top, top + grid.patch)
        weighted = np.empty((grid.patch, grid.patch, self.n_classes), ACCUMULATOR_DTYPE)
        for i, (_, col) in enumerate(columns):
            cols = slice(col, col + grid.patch)
            np.multiply(self._weights3, probs[i], out=weighted)
            self._weighted[rows, cols] += weighted
            self._counts[rows, cols] += self._weights
        self._next_row += 1
        if self.done:
            self._release(grid.padded_height)

    def pop_finished(self) -> tuple[int, np.ndarray] | None:
        """Scene rows that no later window row touches: ``(scene_row_start, (n, width, classes))``.

        None when no row became final since the last call (e.g. rows still in the top padding).
        """
        if not self._ready:
            return None
        start = self._ready_start
        rows = self._ready[0] if len(self._ready) == 1 else np.concatenate(self._ready)
        self._ready, self._ready_start = [], None
        assert start is not None
        return start, rows

    def finish(self) -> tuple[int, np.ndarray] | None:
        """The last scene rows; every window row must have been added."""
        if not self.done:
            raise InputError(
                f"blending stopped after {self._next_row} of {len(self.grid.row_origins)} "
                "window rows; every window row must be added before finish()"
            )
        return self.pop_finished()

    def _advance_to(self, row: int) -> None:
        """Release every padded row above ``row`` and slide the buffer to start there."""
        shift = row - self._buffer_start
        if shift <= 0:
            return
        self._release(row)
        kept = self.grid.patch - shift
        self._weighted[:kept] = self._weighted[shift:]
        self._weighted[kept:] = 0
        self._counts[:kept] = self._counts[shift:]
        self._counts[kept:] = 0
        self._buffer_start = row

    def _release(self, stop: int) -> None:
        """Divide, crop to the scene and queue padded rows ``buffer_start … stop``."""
        grid = self.grid
        first = max(self._buffer_start, grid.pad_top)
        last = min(stop, grid.pad_top + grid.height)
        if first >= last:
            return
        rows = slice(first - self._buffer_start, last - self._buffer_start)
        cols = grid.scene_cols
        counts = self._counts[rows, cols, np.newaxis]
        if np.all(counts > 0):
            finished = self._weighted[rows, cols] / counts
        else:  # windows were left out: no weight means no prediction
            finished = np.full(self._weighted[rows, cols].shape, np.nan, ACCUMULATOR_DTYPE)
            np.divide(self._weighted[rows, cols], counts, out=finished, where=counts > 0)
        if self._ready_start is None:
            self._ready_start = first - grid.pad_top
        self._ready.append(finished.astype(self.dtype, copy=False))


def _check_probs(probs: np.ndarray, patch: int) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[:2] != (patch, patch):
        raise InputError(
            f"a window's softmax has shape {probs.shape}, expected ({patch}, {patch}, classes); "
            "check the model's patch size"
        )
    return probs
