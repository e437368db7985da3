"""From blended probabilities to the deploy outputs: outlines, confidence, smoothing, nodata.

Semantics are those of the published ``deploy.py``, since users compare against its outputs:

- outlines are the argmax of the blended probabilities (ties go to the lower class);
- confidence is ``1 − H`` with ``H`` the Shannon entropy in bits of the probabilities clipped to
  ``[1e-6, 1 − 1e-6]``. The base is fixed at 2, *not* ``n_classes``: for the two-class model this
  is the normalised entropy, for more classes the confidence can go below zero, as published;
- smoothing is ``scipy.ndimage.median_filter(outlines, size=N)`` over the whole scene with scipy's
  default ``mode="reflect"`` edges, applied when ``N`` is truthy. :class:`RowSmoother` produces
  the same values row block by row block.

Invalid pixels: the published pipeline zeroes NaN optical bands before the model, so the model
still predicts there and the median filter sees that prediction (not 0, not nodata). To equal the
published outlines on valid pixels, smooth the raw argmax of every pixel and write the nodata
value only afterwards (:func:`apply_nodata`).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from glaviz.calibration.confidence import CLIP_EPS, confidence
from glaviz.errors import ConfigError

__all__ = [
    "CLIP_EPS",
    "OUTLINE_NODATA",
    "RowSmoother",
    "apply_nodata",
    "confidence",
    "outlines",
    "smooth_outlines",
]

#: The value written into ``outlines.tif`` where the input is invalid: glaviz's one nodata value.
OUTLINE_NODATA = 255


def outlines(probs: np.ndarray) -> np.ndarray:
    """Class index of the largest probability along the last axis, as uint8."""
    return np.argmax(probs, axis=-1).astype(np.uint8)


def apply_nodata(
    outlines: np.ndarray, valid: np.ndarray, *, nodata: int = OUTLINE_NODATA
) -> np.ndarray:
    """``outlines`` as uint8 with ``nodata`` where ``valid`` is False (after any smoothing)."""
    return np.where(valid, outlines, nodata).astype(np.uint8)


def smooth_outlines(outlines: np.ndarray, size: int | None) -> np.ndarray:
    """The published whole-array median filter of outlines; no-op for ``size`` None, 0 or 1."""
    if not _check_size(size):
        return outlines.copy()
    return scipy.ndimage.median_filter(outlines, size=size, mode="reflect")


def _check_size(size: int | None) -> bool:
    """Validate a smoothing size; True when it actually filters."""
    if size is None:
        return False
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise ConfigError(
            f"smoothing must be a non-negative integer filter size, got {size!r}; "
            "use e.g. --smoothing 3, or 0 for none"
        )
    return size > 1


class RowSmoother:
    """Streaming median smoothing of outline rows, equal to :func:`smooth_outlines` on the scene.

    A median of size ``s`` at row ``i`` needs rows ``i − s//2 … i + (s − 1)//2``. The smoother holds
    those halo rows between pushes and releases a row once its last neighbour below has arrived.
    Edges: at the top and bottom of the scene the filter reflects just like the whole-array
    filter; the left and right edges are always in view because rows are full width.
    """

    def __init__(self, size: int | None, width: int) -> None:
        self.size = int(size) if _check_size(size) else 1
        self.width = width
        self._before = self.size // 2
        self._after = self.size - 1 - self._before
        self._rows: np.ndarray | None = None  # held input rows
        self._rows_start = 0  # scene row of _rows[0]
        self._received = 0  # scene rows pushed so far
        self._emitted = 0  # scene rows released so far
        self._finished = False

    def push(self, rows: np.ndarray) -> np.ndarray | None:
        """Add the next outline rows ``(n, width)``; return the rows that became final, if any."""
        if self._finished:
            raise ConfigError("RowSmoother.push() called after finish(); create a new smoother")
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ConfigError(f"outline rows must have shape (n, {self.width}), got {rows.shape}")
        if self.size == 1:
            self._received += len(rows)
            self._emitted = self._received
            return rows if len(rows) else None
        self._rows = rows.copy() if self._rows is None else np.concatenate([self._rows, rows])
        self._received += len(rows)
        return self._release(self._received - self._after)

    def finish(self) -> np.ndarray | None:
        """Every row not yet released; the scene's bottom edge is reached."""
        self._finished = True
        if self.size == 1:
            return None
        return self._release(self._received)

    def _release(self, stop: int) -> np.ndarray | None:
        if stop <= self._emitted or self._rows is None:
            return None
        at_bottom = self._finished
        # Filter the held rows; rows within ``before``/``after`` of a cut that is not a scene edge
        # come out wrong and are dropped or kept for the next call, so only true edges reflect.
        filtered = scipy.ndimage.median_filter(self._rows, size=self.size, mode="reflect")
        out = filtered[self._emitted - self._rows_start : stop - self._rows_start]
        self._emitted = stop
        if not at_bottom:
            keep_from = max(stop - self._before, 0)
            self._rows = self._rows[keep_from - self._rows_start :]
            self._rows_start = keep_from
        return out
