"""Which bands of a feature stack feed which model group, and how they are read.

``glaviz features`` writes one band description per band (``optical:1`` … ``optical:6``,
``elevation``, ``slope``, ``co_pol_sar:1`` …); everything that reads a stack finds its groups
through :class:`StackLayout`, so the stack's layout is defined by those names alone, never by band
positions. Invalid values are NaN in a glaviz stack; :func:`mark_nodata` brings a band with another
declared nodata value to that convention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import InputError
from glaviz.published.groups import GROUP_STACK_BANDS

#: Dataset tag of a stack whose imagery is of one date (``YYYY-MM-DD``; ``glaviz acquire`` sets
#: it): deploy records it as the scene's ``acquisition_date``, where inventory and change find it.
ACQUISITION_DATE_TAG = "ACQUISITION_DATE"

#: The ``glaviz features`` option that provides each group, for "rebuild the stack" hints.
GROUP_OPTIONS: dict[str, str] = {
    "optical": "--optical",
    "dem": "--elevation",
    "co_pol_sar": "--co-pol-sar",
    "cross_pol_sar": "--cross-pol-sar",
    "in_sar": "--in-sar",
    "thermal": "--thermal",
}


@dataclass(frozen=True)
class StackLayout:
    """Which stack bands feed which model group, read from the stack's band descriptions.

    ``bands`` maps each group present in the stack to its 1-based band indexes, in the order
    the model expects. A group counts as present only when all of its bands are.
    """

    name: str
    descriptions: tuple[str | None, ...]
    bands: Mapping[str, tuple[int, ...]]

    @classmethod
    def from_descriptions(
        cls, descriptions: Iterable[str | None], *, name: str = "the stack"
    ) -> StackLayout:
        """Layout from a sequence of band descriptions (``None`` for an unnamed band)."""
        descriptions = tuple(descriptions)
        index = {d: i for i, d in enumerate(descriptions, start=1) if d}
        bands = {
            group: tuple(index[b] for b in names)
            for group, names in GROUP_STACK_BANDS.items()
            if all(b in index for b in names)
        }
        return cls(name=name, descriptions=descriptions, bands=bands)

    @classmethod
    def read(cls, source: Any) -> StackLayout:
        """Layout of an open rasterio dataset, or of the GeoTIFF at a path."""
        if isinstance(source, str | Path):
            import rasterio
            from rasterio.errors import RasterioIOError

            try:
                with rasterio.open(source) as ds:
                    return cls.from_descriptions(ds.descriptions, name=Path(source).name)
            except RasterioIOError as exc:
                raise InputError(f"cannot read stack {source}: {exc}") from None
        name = Path(getattr(source, "name", "the stack")).name
        return cls.from_descriptions(source.descriptions, name=name)

    @property
    def groups(self) -> tuple[str, ...]:
        """Groups present in the stack, in canonical order."""
        return tuple(self.bands)

    def indexes(self, group: str) -> tuple[int, ...]:
        """1-based band indexes of ``group``; see :meth:`require` for the error."""
        self.require([group])
        return self.bands[group]

    def require(self, groups: Iterable[str]) -> None:
        """Raise :class:`InputError` unless every group in ``groups`` is in the stack."""
        groups = tuple(groups)
        missing = [g for g in groups if g not in self.bands]
        if not missing:
            return
        has = ", ".join(self.groups) if self.groups else "no glaviz feature bands"
        options = " ".join(f"{GROUP_OPTIONS.get(g, g)} …" for g in missing)
        raise InputError(
            f"{self.name} has {has}; the model needs {', '.join(groups)}; "
            f"rebuild the stack with glaviz features {options}"
        )

    def read_bands(
        self, dataset: Any, groups: Iterable[str], window: Any = None
    ) -> dict[str, np.ndarray]:
        """Read ``groups`` from an open rasterio ``dataset`` as band-first ``(C, H, W)`` float32.

        One plain read for all bands: the stack marks invalid values as NaN (``glaviz
        features``), so no masked read (which costs several times the decode); a band with
        another nodata value gets NaN there too (:func:`mark_nodata`).
        """
        groups = tuple(groups)
        self.require(groups)
        indexes = [i for g in groups for i in self.bands[g]]
        data = dataset.read(indexes, window=window, out_dtype=np.float32)
        mark_nodata(data, [dataset.nodatavals[i - 1] for i in indexes])
        out: dict[str, np.ndarray] = {}
        start = 0
        for g in groups:
            k = len(self.bands[g])
            out[g] = data[start : start + k]
            start += k
        return out

    def read_groups(
        self, dataset: Any, groups: Iterable[str], window: Any = None
    ) -> dict[str, np.ndarray]:
        """:meth:`read_bands` as channels-last ``(H, W, C)`` arrays."""
        return {
            g: np.moveaxis(a, 0, -1) for g, a in self.read_bands(dataset, groups, window).items()
        }


def mark_nodata(bands: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    """Set each band of ``(C, H, W)`` ``bands`` to NaN where it equals its declared nodata value
    (in place; bands whose nodata is None or NaN are already in the stack convention)."""
    for band, value in zip(bands, nodata, strict=True):
        if value is not None and not np.isnan(value):
            band[band == value] = np.nan
    return bands


#: Windows per axis, and their side, that :meth:`StackLayout.require_reflectance` reads: 3 × 3
#: windows of 256² spread over the scene, a few MB whatever the scene size.
RADIOMETRY_SAMPLES = 3
RADIOMETRY_WINDOW = 256


def sample_windows(
    height: int, width: int, *, per_axis: int = RADIOMETRY_SAMPLES, size: int = RADIOMETRY_WINDOW
) -> list[tuple[int, int, int, int]]:
    """``(row, col, height, width)`` of up to ``per_axis²`` windows spread evenly over a scene,
    corners included, each at most ``size`` pixels a side (fewer for a small scene)."""

    def starts(extent: int) -> list[int]:
        last = max(extent - size, 0)
        return sorted({int(v) for v in np.linspace(0, last, per_axis).round()})

    h, w = min(size, height), min(size, width)
    return [(r, c, h, w) for r in starts(height) for c in starts(width)]


def require_reflectance(dataset: Any, layout: StackLayout, *, name: str) -> None:
    """Raise :class:`InputError` unless the stack's optical bands can be reflectance.

    Checks the band type (integers are digital numbers) and the values of a few windows
    (:func:`sample_windows`) against :class:`~glaviz.published.normalisation.OpticalRange`, the
    check ``glaviz features`` applies to every window it writes; the whole stack is never read.
    ``name`` starts the message (``stack /path/to/stack.tif``). A stack without optical bands
    passes: :meth:`StackLayout.require` reports a missing group.
    """
    from glaviz.published.normalisation import OpticalRange, optical_dtype_problem

    indexes = layout.bands.get("optical")
    if not indexes:
        return
    for dtype in dict.fromkeys(dataset.dtypes[i - 1] for i in indexes):
        problem = optical_dtype_problem(dtype)
        if problem is not None:
            raise InputError(f"{name}: {problem}")
    from rasterio.windows import Window

    seen = OpticalRange()
    nodata = [dataset.nodatavals[i - 1] for i in indexes]
    for row, col, h, w in sample_windows(dataset.height, dataset.width):
        window = Window(col, row, w, h)
        values = dataset.read(list(indexes), window=window, out_dtype=np.float32)
        seen.update(mark_nodata(values, nodata))
    problem = seen.problem()
    if problem is not None:
        raise InputError(f"{name}: {problem}")
