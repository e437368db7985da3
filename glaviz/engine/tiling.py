"""The window grid of the published deploy pipeline: padding, window origins, blend weights.

GlaViTU sees fixed ``patch × patch`` windows. The published pipeline (``compile_features.py`` and
``deploy.py`` of Maslov et al.) pads the *normalised* scene with zeros to
``patch * (n // patch + 1)`` per axis, centred with the odd pixel at the bottom/right, and slides
windows with stride ``patch // 2`` over the padded scene. Every window's softmax is weighted by a
Gaussian of the distance to the window centre. Keeping this grid exactly is what makes published
weights give published results, so nothing here is "improved" (not even the extra full patch of
padding when a side is already a multiple of the patch).

Two coordinate systems appear: *padded* (row/col in the zero-padded scene, where windows live) and
*scene* (row/col in the stack on disk). ``scene = padded - pad``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from glaviz.errors import ConfigError, InputError

__all__ = [
    "BLEND_KINDS",
    "TileGrid",
    "WindowRead",
    "blend_weights",
    "column_hits",
    "extract_window",
    "read_window_from_padded",
    "taper_weights",
    "tile_grid",
    "window_hits",
    "window_spans",
    "window_weights",
]


@dataclass(frozen=True)
class TileGrid:
    """Where the windows of one scene lie, in padded coordinates.

    Build it with :func:`tile_grid`. Origins are sorted; window ``(k, j)`` covers padded rows
    ``row_origins[k] : row_origins[k] + patch`` and columns ``col_origins[j] : … + patch``.
    """

    height: int
    width: int
    patch: int
    stride: int
    padded_height: int
    padded_width: int
    pad_top: int
    pad_left: int
    row_origins: tuple[int, ...]
    col_origins: tuple[int, ...]

    @property
    def pad_bottom(self) -> int:
        return self.padded_height - self.height - self.pad_top

    @property
    def pad_right(self) -> int:
        return self.padded_width - self.width - self.pad_left

    @property
    def n_windows(self) -> int:
        return len(self.row_origins) * len(self.col_origins)

    @property
    def scene_rows(self) -> slice:
        """The padded rows that hold the scene (crop a padded array with it)."""
        return slice(self.pad_top, self.pad_top + self.height)

    @property
    def scene_cols(self) -> slice:
        """The padded columns that hold the scene."""
        return slice(self.pad_left, self.pad_left + self.width)

    def to_scene(self, row: float, col: float) -> tuple[float, float]:
        """Padded (row, col) → scene (row, col); the result may lie outside the scene."""
        return row - self.pad_top, col - self.pad_left

    def to_padded(self, row: float, col: float) -> tuple[float, float]:
        """Scene (row, col) → padded (row, col)."""
        return row + self.pad_top, col + self.pad_left

    def windows(self) -> Iterator[tuple[int, int, int, int]]:
        """``(k, j, row_origin, col_origin)`` in the published order: row by row, left to right."""
        for k, row in enumerate(self.row_origins):
            for j, col in enumerate(self.col_origins):
                yield k, j, row, col

    def window_centre(self, row_origin: int, col_origin: int) -> tuple[int, int]:
        """Scene (row, col) of the pixel at a window's centre.

        The published coordinate encoding takes latitude/longitude of the pixel at
        ``origin + patch // 2`` (pixel centres). Near the bottom/right edge that pixel can fall
        in the padding, i.e. outside the scene: compute its coordinates from the affine transform,
        which extrapolates, rather than looking them up in the scene.
        """
        half = self.patch // 2
        return row_origin + half - self.pad_top, col_origin + half - self.pad_left


def tile_grid(height: int, width: int, patch: int) -> TileGrid:
    """The published window grid for a ``height × width`` scene and a model's ``patch`` size."""
    _check_positive_int(patch, "patch size", ConfigError, "use the model's patch size, e.g. 384")
    if patch % 2:
        raise ConfigError(
            f"patch size must be even so that windows of stride patch/2 tile the scene, "
            f"got {patch}; use an even size such as 384"
        )
    for value, name in ((height, "scene height"), (width, "scene width")):
        _check_positive_int(value, name, InputError, "check that the stack is not empty")
    stride = patch // 2
    padded_height, pad_top = _padding(height, patch)
    padded_width, pad_left = _padding(width, patch)
    return TileGrid(
        height=height,
        width=width,
        patch=patch,
        stride=stride,
        padded_height=padded_height,
        padded_width=padded_width,
        pad_top=pad_top,
        pad_left=pad_left,
        row_origins=tuple(range(0, padded_height - patch + 1, stride)),
        col_origins=tuple(range(0, padded_width - patch + 1, stride)),
    )


def _padding(size: int, patch: int) -> tuple[int, int]:
    # Published: target = patch * (size // patch + 1), i.e. a whole extra patch when ``size`` is
    # already a multiple; the leading pad is the floor of half the excess.
    padded = patch * (size // patch + 1)
    return padded, (padded - size) // 2


def _check_positive_int(value: object, name: str, error: type[Exception], hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise error(f"{name} must be a positive integer, got {value!r}; {hint}")


def blend_weights(patch: int) -> np.ndarray:
    """Gaussian blend weights ``exp(-d² / 2) / sqrt(2/π)`` on a ``patch × patch`` grid (float64).

    ``d`` is the distance from the window centre on a grid of ``linspace(-1, 1, patch)`` in both
    axes, so the corners have ``d = √2``. The distance is formed first and then squared, as in the
    published code: that costs nothing and keeps the weights bit-identical to it.
    """
    _check_positive_int(patch, "patch size", ConfigError, "use the model's patch size, e.g. 384")
    axis = np.linspace(-1.0, 1.0, patch)
    x, y = np.meshgrid(axis, axis)
    distance = np.sqrt(x**2 + y**2)
    return np.exp(-(distance**2) / 2) / math.sqrt(2 / math.pi)


#: How overlapping windows are weighted: ``gaussian`` is the published blend (keep it for published
#: weights, so published accuracy holds); ``taper`` weights fall to nearly zero at the window's
#: edge (for glaviz's own models, whose window edges show as seams under the Gaussian).
BLEND_KINDS: tuple[str, ...] = ("gaussian", "taper")


def taper_weights(patch: int) -> np.ndarray:
    """Separable sine² weights ``sin²(π (i + ½) / patch)`` per axis on ``patch × patch`` (float64).

    With the stride of half a window they sum to exactly 1 wherever two windows overlap per axis
    (``sin² + cos²``), so a pixel's value is a smooth mix of the windows that see it, and a
    window's edge, where a convolutional model sees the least context, enters with weight
    ``sin²(π / 2·patch)``: small, never zero (a scene pixel that only one window covers still
    gets that window's prediction).
    """
    _check_positive_int(patch, "patch size", ConfigError, "use the model's patch size, e.g. 384")
    axis = np.sin(np.pi * (np.arange(patch) + 0.5) / patch) ** 2
    return np.outer(axis, axis)


def window_weights(patch: int, kind: str = "gaussian") -> np.ndarray:
    """The blend weights of one window for a blend ``kind`` of :data:`BLEND_KINDS`."""
    if kind == "gaussian":
        return blend_weights(patch)
    if kind == "taper":
        return taper_weights(patch)
    raise ConfigError(f"blend must be one of {', '.join(BLEND_KINDS)}, got {kind!r}")


@dataclass(frozen=True)
class WindowRead:
    """How to fill one zero-padded window from the scene on disk.

    Read ``scene[scene_rows, scene_cols]`` and place it at ``window[window_rows, window_cols]``
    of a zero-filled window; everything else in the window is padding. The published pipeline pads
    the normalised scene with zeros, so the zero fill happens *after* normalising.
    """

    scene_rows: slice
    scene_cols: slice
    window_rows: slice
    window_cols: slice
    shape: tuple[int, int]

    @property
    def is_empty(self) -> bool:
        """True when the window lies entirely in the padding (nothing to read)."""
        return self.scene_rows.start >= self.scene_rows.stop or (
            self.scene_cols.start >= self.scene_cols.stop
        )

    @property
    def is_full(self) -> bool:
        """True when the scene fills the whole window (no zero fill needed)."""
        rows = self.scene_rows.stop - self.scene_rows.start
        cols = self.scene_cols.stop - self.scene_cols.start
        return (rows, cols) == self.shape


def read_window_from_padded(
    grid: TileGrid,
    row_origin: int,
    col_origin: int,
    *,
    height: int | None = None,
    width: int | None = None,
) -> WindowRead:
    """The part of the scene that a padded-coordinate window overlaps, and where it goes.

    ``height``/``width`` default to the patch; pass e.g. ``width=grid.padded_width`` with
    ``col_origin=0`` to plan one read for a whole strip of windows.
    """
    height = grid.patch if height is None else height
    width = grid.patch if width is None else width
    scene_rows, window_rows = _axis_overlap(row_origin, height, grid.pad_top, grid.height)
    scene_cols, window_cols = _axis_overlap(col_origin, width, grid.pad_left, grid.width)
    return WindowRead(scene_rows, scene_cols, window_rows, window_cols, (height, width))


def _axis_overlap(origin: int, size: int, pad: int, scene_size: int) -> tuple[slice, slice]:
    start = min(max(origin - pad, 0), scene_size)
    stop = max(min(origin + size - pad, scene_size), start)
    offset = start + pad - origin
    return slice(start, stop), slice(offset, offset + stop - start)


def extract_window(
    scene: np.ndarray,
    grid: TileGrid,
    row_origin: int,
    col_origin: int,
) -> np.ndarray:
    """A ``patch × patch × …`` window of an in-memory scene, zero outside it (float32).

    Equivalent to slicing the published zero-padded array, without ever building it.
    """
    plan = read_window_from_padded(grid, row_origin, col_origin)
    window = np.zeros((grid.patch, grid.patch, *scene.shape[2:]), dtype=np.float32)
    window[plan.window_rows, plan.window_cols] = scene[plan.scene_rows, plan.scene_cols]
    return window


# ----------------------------------------------------------------------------- which windows run


def window_spans(
    grid: TileGrid, halo: int = 0
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Scene rows and columns each window row and window column covers, grown by ``halo``.

    ``(start, stop)`` per window row, then per window column, clipped to the scene (a window's
    padding holds no pixel). ``halo``: pixels a window's outputs reach beyond it, which is the
    median filter's half size when outlines are smoothed: a smoothed pixel reads the argmax of
    its neighbours, so the windows under those neighbours matter to it too.
    """
    if halo < 0:
        raise ConfigError(f"halo must be at least 0, got {halo}")

    def spans(origins: tuple[int, ...], pad: int, size: int) -> list[tuple[int, int]]:
        return [
            (min(max(o - pad - halo, 0), size), max(min(o - pad + grid.patch + halo, size), 0))
            for o in origins
        ]

    return (
        spans(grid.row_origins, grid.pad_top, grid.height),
        spans(grid.col_origins, grid.pad_left, grid.width),
    )


def column_hits(any_in_column: np.ndarray, col_spans: list[tuple[int, int]]) -> np.ndarray:
    """For one window row: True for each window whose columns hold a True of ``any_in_column``.

    ``any_in_column``: ``(width,)`` bool, True where some scene row of the window row's span is
    set (``mask[rows].any(axis=0)``). One cumulative sum answers every window of the row.
    """
    counts = np.concatenate([[0], np.cumsum(any_in_column, dtype=np.int64)])
    return np.array([counts[b] > counts[a] for a, b in col_spans], dtype=bool)


def window_hits(
    mask: np.ndarray | Callable[[int, int], np.ndarray], grid: TileGrid, halo: int = 0
) -> np.ndarray:
    """``(window rows, window columns)`` bool: which windows (grown by ``halo``) meet ``mask``.

    ``mask``: ``(height, width)`` bool on the scene, or a function returning its scene rows
    ``a:b`` (a mask held packed, unpacked a window row at a time). A window that meets no True
    pixel can be left out without changing any output at a True pixel: a pixel's blend only sums
    the windows that cover it, and each of those meets the pixel.
    """
    if callable(mask):
        rows = mask
    else:
        if mask.shape != (grid.height, grid.width):
            raise InputError(
                f"mask has shape {mask.shape}, the scene is {(grid.height, grid.width)}"
            )

        def rows(a: int, b: int) -> np.ndarray:
            return mask[a:b]

    row_spans, col_spans = window_spans(grid, halo)
    hits = np.zeros((len(row_spans), len(col_spans)), bool)
    for k, (a, b) in enumerate(row_spans):
        if b > a:
            hits[k] = column_hits(rows(a, b).any(axis=0), col_spans)
    return hits
