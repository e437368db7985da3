"""The published normalisation: from physical-unit feature bands to normalised model inputs.

Deploy, optimise-bias and every other command that feeds a stack to GlaViTU go through here, so
the published preprocessing lives in one place:

* optical: NaN → 0, then ``(x - min) / (max - min)``;
* SAR backscatter (``co_pol_sar``, ``cross_pol_sar``): ``log10(sigma0 + 1e-6)`` first;
* every other group: ``(x - min) / (max - min)`` only. The published ``compile_features.py``
  replaces NaN in the optical bands alone, so NaN elsewhere (a DEM hole, SAR layover) stays NaN
  here too; callers decide what an invalid pixel means (deploy masks with :func:`valid_mask`).

The statistics are the published benchmark min/max, shipped inside the package
(``glaviz/data/normalization.json``); model bundles carry their own and load them with
:meth:`NormalisationStats.from_dict`. Numpy only: nothing here imports TensorFlow or rasterio at
module level.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import ConfigError, InputError
from glaviz.published.groups import GROUP_BANDS

#: Groups whose stack values are linear backscatter and are log-scaled before normalising.
SAR_GROUPS: frozenset[str] = frozenset({"co_pol_sar", "cross_pol_sar"})
#: Added before ``log10`` so that zero backscatter maps to -6, the statistics' minimum.
SAR_EPSILON = 1e-6


@dataclass(frozen=True, eq=False)
class NormalisationStats:
    """Per-group ``min`` / ``max`` arrays in the units the model sees before scaling.

    Keys are model groups (``dem`` holds elevation then slope). Values are read-only float64
    arrays with one entry per band. SAR statistics are in ``log10`` units, as published.
    """

    min: Mapping[str, np.ndarray]
    max: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        mins, maxs = {}, {}
        for group in self.min:
            if group not in self.max:
                raise ConfigError(f"normalisation statistics have a min but no max for {group}")
        for group in self.max:
            if group not in self.min:
                raise ConfigError(f"normalisation statistics have a max but no min for {group}")
            lo = np.array(self.min[group], dtype=np.float64).reshape(-1)
            hi = np.array(self.max[group], dtype=np.float64).reshape(-1)
            expected = GROUP_BANDS.get(group)
            if expected is None:
                raise ConfigError(
                    f"normalisation statistics name unknown group {group}; "
                    f"known groups are {', '.join(GROUP_BANDS)}"
                )
            if lo.shape != (expected,) or hi.shape != (expected,):
                raise ConfigError(
                    f"normalisation statistics for {group} have {lo.size} min and {hi.size} max "
                    f"values; the group has {expected} bands"
                )
            if not np.all(hi > lo):
                raise ConfigError(f"normalisation statistics for {group} need max > min everywhere")
            lo.flags.writeable = False
            hi.flags.writeable = False
            mins[group], maxs[group] = lo, hi
        # Frozen dataclass: normalise the stored mappings once, in canonical group order.
        object.__setattr__(self, "min", {g: mins[g] for g in GROUP_BANDS if g in mins})
        object.__setattr__(self, "max", {g: maxs[g] for g in GROUP_BANDS if g in maxs})

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups these statistics cover, in canonical order."""
        return tuple(self.min)

    def bounds(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        """``(min, max)`` of ``group``; a :class:`ConfigError` says which groups exist."""
        if group not in self.min:
            raise ConfigError(
                f"no normalisation statistics for feature group {group}; "
                f"these statistics cover {', '.join(self.groups)}"
            )
        return self.min[group], self.max[group]

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        """``{group: {"min": [...], "max": [...]}}``, the form model bundles store."""
        return {g: {"min": self.min[g].tolist(), "max": self.max[g].tolist()} for g in self.groups}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormalisationStats:
        """Build from a bundle's ``{group: {"min", "max"}}`` or the published JSON layout.

        The published layout is ``{"min": {name: [...]}, "max": {name: [...]}}`` with separate
        ``elevation`` and ``slope`` entries, which are joined into the model's ``dem`` group.
        """
        if "min" in data and "max" in data and isinstance(data["min"], Mapping):
            mins, maxs = _join_dem(data["min"]), _join_dem(data["max"])
        else:
            mins, maxs = {}, {}
            for group, entry in data.items():
                if not isinstance(entry, Mapping) or "min" not in entry or "max" not in entry:
                    raise ConfigError(
                        f"normalisation statistics for {group} must be "
                        '{"min": [...], "max": [...]}'
                    )
                mins[group], maxs[group] = entry["min"], entry["max"]
        return cls(min=mins, max=maxs)

    @classmethod
    def from_json(cls, path: str | Path) -> NormalisationStats:
        """Read statistics from a JSON file in either layout of :meth:`from_dict`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read normalisation statistics {path}: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def published(cls) -> NormalisationStats:
        """The published benchmark statistics shipped with glaviz."""
        return _published()


def _join_dem(values: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name, v in values.items():
        if name in ("elevation", "slope"):
            continue
        out[name] = list(v)
    if "elevation" in values and "slope" in values:
        out["dem"] = [*values["elevation"], *values["slope"]]
    return out


@lru_cache(maxsize=1)
def _published() -> NormalisationStats:
    text = resources.files("glaviz").joinpath("data/normalization.json").read_text()
    return NormalisationStats.from_dict(json.loads(text))


def normalise_group(
    group: str, x: np.ndarray, stats: NormalisationStats | None = None
) -> np.ndarray:
    """Normalise one group's ``(..., H, W, C)`` physical values to model inputs (float32).

    Follows the published preprocessing bit for bit (computed in float64, then rounded to
    float32): optical NaN → 0; SAR ``log10(sigma0 + 1e-6)``; ``(x - min) / (max - min)``.
    NaN in non-optical groups is kept, as in the published code.
    """
    stats = NormalisationStats.published() if stats is None else stats
    lo, hi = stats.bounds(group)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != lo.size:
        raise InputError(
            f"{group} input has shape {arr.shape}; expected channels last with {lo.size} bands"
        )
    if group == "optical":
        arr = np.where(np.isnan(arr), 0.0, arr)
    elif group in SAR_GROUPS:
        with np.errstate(invalid="ignore", divide="ignore"):
            arr = np.log10(arr + SAR_EPSILON)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def normalise_bands(
    group: str,
    bands: np.ndarray,
    stats: NormalisationStats | None = None,
    *,
    out: np.ndarray,
) -> np.ndarray:
    """Normalise band-first ``(C, H, W)`` physical values into ``out`` ``(H, W, C)`` float32.

    The deploy reader's form of :func:`normalise_group`: the same float64 arithmetic, band by
    band on contiguous rows (as the stack is read), so the values are bit-identical. Unlike
    :func:`normalise_group` it also zeroes every value that is not finite afterwards (NaN in a
    DEM hole or SAR gap), as deploy does with pixels it marks invalid.
    """
    stats = NormalisationStats.published() if stats is None else stats
    lo, hi = stats.bounds(group)
    if bands.shape[0] != lo.size:
        raise InputError(f"{group} has {bands.shape[0]} bands; expected {lo.size}")
    work = np.empty(bands.shape[1:], np.float64)
    for c in range(lo.size):
        band = bands[c]
        finite = np.isfinite(band)
        # The published arithmetic, in float64 (the input is widened exactly): (x - min) / range.
        if group in SAR_GROUPS:
            np.add(band, SAR_EPSILON, out=work, dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                np.log10(work, out=work)
            work -= lo[c]
        else:
            np.subtract(band, lo[c], out=work, dtype=np.float64)
        work /= hi[c] - lo[c]
        if not finite.all():
            bad = ~finite
            # Published: optical NaN → 0 before normalising; anything else invalid → 0 after.
            fill = (0.0 - lo[c]) / (hi[c] - lo[c]) if group == "optical" else 0.0
            work[bad] = 0.0
            if group == "optical":
                work[np.isnan(band)] = fill
        if group in SAR_GROUPS:
            work[~np.isfinite(work)] = 0.0  # log10 of negative backscatter
        out[..., c] = work
    return out


def normalise(
    features: Mapping[str, np.ndarray], stats: NormalisationStats | None = None
) -> dict[str, np.ndarray]:
    """:func:`normalise_group` for every group in ``features`` (order kept)."""
    return {g: normalise_group(g, x, stats) for g, x in features.items()}


def valid_mask(optical: np.ndarray) -> np.ndarray:
    """True where every optical band is finite: the pixels the model's output is defined on.

    ``optical`` is ``(..., H, W, C)`` in physical units (before :func:`normalise_group`, which
    turns NaN into 0 and so hides invalid pixels). Deploy writes nodata where this is False.
    """
    return np.all(np.isfinite(np.asarray(optical)), axis=-1)


# ----------------------------------------------------------------------------- radiometry

#: Largest optical value that can be top-of-atmosphere reflectance. The published statistics reach
#: 2.0–2.7 (bright snow under a low sun); digital numbers are in the hundreds or thousands
#: (Sentinel-2 L1C quantifies reflectance × 10000) and reflectance in percent reaches 100.
REFLECTANCE_MAX = 10.0
#: Smallest optical value that can be reflectance: the published minimum is about -0.03 and
#: atmospheric correction leaves values barely below 0, while an undeclared fill value (-9999,
#: -32768) is far lower.
REFLECTANCE_MIN = -1.0
#: How to turn digital numbers into what the model reads, for every message that refuses them.
REFLECTANCE_FIX = (
    "convert digital numbers with the product's own constants, (DN + RADIO_ADD_OFFSET) / "
    "QUANTIFICATION_VALUE (Sentinel-2 L1C since 2022: (DN - 1000) / 10000), and store float32, "
    "then rebuild the stack with glaviz features (glaviz acquire does all of this)"
)


def optical_dtype_problem(dtype: str | np.dtype) -> str | None:
    """Why optical bands of ``dtype`` cannot hold reflectance, or None when they can.

    Integer optical bands are digital numbers: the model reads their values as reflectance, so a
    uint16 Sentinel-2 stack maps bright pixels as ice and gives confident nonsense.
    """
    kind = np.dtype(dtype).kind
    if kind == "f":
        return None
    return (
        f"its optical bands are {np.dtype(dtype).name}, digital numbers rather than "
        f"top-of-atmosphere reflectance (float, about 0-1); {REFLECTANCE_FIX}"
    )


@dataclass
class OpticalRange:
    """The smallest and largest finite optical value seen so far, over any number of chunks.

    ``glaviz features`` feeds every window it writes and warns; deploy feeds a few sampled
    windows and refuses: one check, so the two commands call the same values wrong.
    """

    low: float = np.inf
    high: float = -np.inf

    def update(self, values: np.ndarray) -> None:
        """Add optical values of any shape (NaN and infinities are ignored)."""
        finite = np.asarray(values)[np.isfinite(values)]
        if finite.size:
            self.low = min(self.low, float(finite.min()))
            self.high = max(self.high, float(finite.max()))

    def problem(self) -> str | None:
        """Why these values cannot be reflectance, with the fix; None when they can (or when
        no finite value was seen)."""
        if self.high > REFLECTANCE_MAX:
            return (
                f"optical values reach {self.high:.6g}; the model expects top-of-atmosphere "
                f"reflectance (about 0-1, never above {REFLECTANCE_MAX:g}): {REFLECTANCE_FIX}"
            )
        if self.low < REFLECTANCE_MIN:
            return (
                f"optical values go down to {self.low:.6g}; reflectance is never below "
                f"{REFLECTANCE_MIN:g}, so this looks like a fill value: declare it as nodata "
                f"(gdal_edit.py -a_nodata {self.low:g} FILE) or set it to NaN"
            )
        return None
