"""``quicklook.png``: the scene as natural colour with the outlines drawn on it, and the confidence.

People look at a map before they read numbers. The quicklook is two panels side by side, at
most :data:`MAX_SIDE` pixels on the long side in total: left the optical input (red, green,
blue, a 2–98 % stretch) with the glacier outlines drawn in ice blue, right the confidence on a
dark-to-bright scale; invalid input is grey, and pixels outside a region of interest (not
mapped) are dark violet, so that no one reads them as "no ice"; with a region of interest a
legend below the panels names the three colours. It is built while the scene streams by, from
a nearest-neighbour sample of rows and columns, so it costs a few MB and no second read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Longest side of quicklook.png in pixels (both panels together).
MAX_SIDE = 2048
#: Gap between the panels, in pixels.
GAP = 8
OUTLINE_RGB = (0, 170, 255)
INVALID_RGB = (128, 128, 128)
NOT_MAPPED_RGB = (72, 40, 96)
#: Height of the legend strip under the panels, in pixels.
LEGEND_HEIGHT = 20
LEGEND = (
    ("glacier outline", OUTLINE_RGB),
    ("invalid input", INVALID_RGB),
    ("not mapped (outside the region of interest)", NOT_MAPPED_RGB),
)


def panel_shape(height: int, width: int, *, reserve: int = 0) -> tuple[int, int]:
    """Size of one panel: the scene scaled so that two panels side by side fit :data:`MAX_SIDE`
    (``reserve``: rows kept free below them, for the legend)."""
    scale = min(1.0, (MAX_SIDE - GAP) / (2 * width), (MAX_SIDE - reserve) / height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def sample_positions(size: int, n: int) -> np.ndarray:
    """``n`` evenly spread pixel positions along a side of ``size`` (nearest-neighbour preview)."""
    return np.minimum(((np.arange(n) + 0.5) * (size / n)).astype(np.intp), size - 1)


class Quicklook:
    """Collects a sample of the scene rows as they are written, then renders the PNG.

    ``legend``: draw the legend strip (deploy does with a region of interest).
    """

    def __init__(self, height: int, width: int, *, legend: bool = False) -> None:
        self.height, self.width = height, width
        self.legend = legend
        rows, cols = panel_shape(height, width, reserve=LEGEND_HEIGHT if legend else 0)
        self.rows = sample_positions(height, rows)  # scene rows sampled, increasing
        # scene columns sampled (the reader picks these)
        self.columns = sample_positions(width, cols)
        # float16 is plenty for a picture and halves the canvases (≤ 2048 × 1020 pixels).
        self._rgb = np.zeros((rows, cols, 3), np.float16)
        self._outlines = np.zeros((rows, cols), np.uint8)
        self._not_mapped = np.zeros((rows, cols), bool)
        self._confidence = np.zeros((rows, cols), np.float16)

    def _pick(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Panel rows whose sampled scene row lies in ``start:start + n``, and their offsets."""
        lo, hi = np.searchsorted(self.rows, [start, start + n])
        return np.arange(lo, hi), self.rows[lo:hi] - start

    def add_rgb(self, start: int, rgb: np.ndarray) -> None:
        """Red, green, blue of scene rows from ``start``, at :attr:`columns` already."""
        at, offsets = self._pick(start, len(rgb))
        self._rgb[at] = rgb[offsets]

    def add_outlines(
        self, start: int, outlines: np.ndarray, not_mapped: np.ndarray | None = None
    ) -> None:
        """Final outline rows (0, 1 or nodata) from scene row ``start``, full width;
        ``not_mapped``: the same rows' pixels outside the region of interest."""
        at, offsets = self._pick(start, len(outlines))
        self._outlines[at] = outlines[offsets][:, self.columns]
        if not_mapped is not None:
            self._not_mapped[at] = not_mapped[offsets][:, self.columns]

    def add_confidence(self, start: int, confidence: np.ndarray) -> None:
        at, offsets = self._pick(start, len(confidence))
        self._confidence[at] = confidence[offsets][:, self.columns]

    def render(self) -> np.ndarray:
        """The quicklook as an ``(H, W, 3)`` uint8 image."""
        invalid = ~np.all(np.isfinite(self._rgb), axis=-1) | (self._outlines > 1)
        rgb = _stretch(self._rgb.astype(np.float32), invalid)
        glacier = self._outlines == 1
        rgb[_edges(glacier)] = OUTLINE_RGB
        rgb[invalid] = INVALID_RGB
        conf = np.clip(np.nan_to_num(self._confidence.astype(np.float32)), 0.0, 1.0)
        grey = (conf * 255).round().astype(np.uint8)
        right = np.stack([grey, grey, grey], axis=-1)
        right[glacier] = (right[glacier] * np.array([0.55, 0.85, 1.0])).astype(np.uint8)
        right[invalid] = INVALID_RGB
        rgb[self._not_mapped] = NOT_MAPPED_RGB
        right[self._not_mapped] = NOT_MAPPED_RGB
        gap = np.full((rgb.shape[0], GAP, 3), 255, np.uint8)
        panels = np.concatenate([rgb, gap, right], axis=1)
        if not self.legend:
            return panels
        return np.concatenate([panels, _legend(panels.shape[1])], axis=0)

    def write(self, path: Path) -> None:
        from PIL import Image

        # zlib level 1: about half the default level's time, for a slightly larger file.
        Image.fromarray(self.render()).save(path, format="PNG", compress_level=1)


def _legend(width: int) -> np.ndarray:
    """A white strip naming the colours: a swatch and a label per entry of :data:`LEGEND`."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, LEGEND_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    x = 4
    for label, colour in LEGEND:
        draw.rectangle([x, 5, x + 10, 15], fill=colour)
        draw.text((x + 14, 4), label, fill=(0, 0, 0))
        x += 14 + int(draw.textlength(label)) + 12
    return np.asarray(strip)


def _stretch(rgb: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """2–98 % linear stretch per band over the valid pixels, to uint8."""
    out = np.zeros(rgb.shape, np.uint8)
    good = ~invalid
    for b in range(3):
        band = rgb[..., b]
        values = band[good]
        if values.size == 0:
            continue
        lo, hi = np.percentile(values, [2, 98])
        scaled = (band - lo) / max(hi - lo, 1e-12)
        out[..., b] = (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8)
    return out


def _edges(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it: the outline to draw."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner
