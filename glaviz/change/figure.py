"""change.png: the map of change between the first and the last date, and total area by date.

The map shows the codes of change.tif between the first and the last date, reduced to at most
:data:`MAP_PIXELS` a side by keeping, in each block, the most telling code (lost, then gained,
then ice, then unobserved, then no ice), so that a one-pixel retreat stays visible on a
Sentinel-2 tile. Beside it, the total area at each date, counted over the pixels observed at
every date, with the buffer uncertainty as error bars when there are more than two dates.
matplotlib's object API on the Agg canvas: no pyplot, no display, no global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glaviz.change.match import STRIP_ROWS
from glaviz.change.measure import GAINED, ICE_BOTH, LOST, NO_ICE, UNOBSERVED, strip_codes
from glaviz.change.outputs import CODE_COLOURS, CODE_NAMES
from glaviz.inventory.grid import Grid

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Largest side of the map, in displayed pixels.
MAP_PIXELS = 1200
#: Which code wins a block of the reduced map, most telling last.
_PRIORITY = (NO_ICE, UNOBSERVED, ICE_BOTH, GAINED, LOST)


@dataclass(frozen=True)
class AreaSeries:
    """Total area at each date over the pixels observed at every date, with its uncertainty."""

    dates: list[str]
    area_km2: list[float]
    buffer_km2: list[float]


def map_codes(first: np.ndarray, last: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """change.tif codes of first → last, reduced by a whole factor; (codes, factor)."""
    h, w = first.shape
    factor = max(1, math.ceil(max(h, w) / MAP_PIXELS))
    rank = np.zeros(256, dtype=np.uint8)
    for k, code in enumerate(_PRIORITY):
        rank[code] = k
    step = max(factor, STRIP_ROWS // factor * factor)
    blocks = []
    for r in range(0, h, step):
        codes = strip_codes(first[r : r + step] > 0, last[r : r + step] > 0, valid[r : r + step])
        blocks.append(_reduce(rank[codes], factor))
    ranks = np.concatenate(blocks, axis=0)
    return np.asarray(_PRIORITY, dtype=np.uint8)[ranks], factor


def _reduce(ranks: np.ndarray, factor: int) -> np.ndarray:
    h, w = ranks.shape
    hh, ww = math.ceil(h / factor) * factor, math.ceil(w / factor) * factor
    padded = np.zeros((hh, ww), dtype=ranks.dtype)
    padded[:h, :w] = ranks
    return padded.reshape(hh // factor, factor, ww // factor, factor).max(axis=(1, 3))


def write_png(path: Path, codes: np.ndarray, factor: int, grid: Grid, series: AreaSeries) -> None:
    """The map with legend, scale bar and dates, and the area-by-date plot beside it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rgb = np.zeros((*codes.shape, 3), dtype=np.uint8)
    for code, colour in CODE_COLOURS.items():
        rgb[codes == code] = colour[:3]
    fig = Figure(figsize=(12, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax_map, ax_plot = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    width_m = grid.width * grid.xres
    height_m = grid.height * grid.yres
    ax_map.imshow(rgb, extent=(0, width_m, 0, height_m), interpolation="nearest")
    ax_map.set_xticks([])
    ax_map.set_yticks([])
    ax_map.set_title(f"Glacier change {series.dates[0]} → {series.dates[-1]}")
    handles = [
        Patch(facecolor=np.array(CODE_COLOURS[c][:3]) / 255, label=CODE_NAMES[c])
        for c in (ICE_BOTH, LOST, GAINED, UNOBSERVED, NO_ICE)
    ]
    ax_map.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)
    _scale_bar(ax_map, width_m, height_m)
    _area_plot(ax_plot, series)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _scale_bar(ax: Axes, width_m: float, height_m: float) -> None:
    """A bar of a round length (1, 2 or 5 × 10^n m) about a fifth of the map wide."""
    target = width_m / 5
    power = 10 ** math.floor(math.log10(target))
    length = max(m * power for m in (1, 2, 5) if m * power <= target)
    x0, y0 = width_m * 0.05, height_m * 0.05
    ax.plot([x0, x0 + length], [y0, y0], color="black", linewidth=3)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1}
    ax.text(x0 + length / 2, y0 + height_m * 0.025, label, ha="center", va="bottom", bbox=box)


def _area_plot(ax: Axes, series: AreaSeries) -> None:
    import datetime as dt

    dates = [dt.date.fromisoformat(d) for d in series.dates]
    errors = series.buffer_km2 if len(dates) > 2 else None
    ax.errorbar(dates, series.area_km2, yerr=errors, marker="o", capsize=4, color="tab:blue")
    ax.set_ylabel("total glacier area (km²), observed at every date")
    ax.set_title("Total area by date" + (" (± buffer uncertainty)" if errors else ""))
    ax.grid(True, alpha=0.3)
    for label in ax.get_xticklabels():
        label.set_rotation(30)
