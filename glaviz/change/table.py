"""The change table: one row per group of glaciers and date pair, and the sums above it.

Field names are a contract (scripts read them); docs/change.md explains each. Glacier rows have
``level`` = ``glacier``; sums per complex (when the inputs name complexes), per region (when the
reference or inventory has a region column) and in total follow with ``level`` = ``complex``,
``region`` or ``total`` and the complex or region in ``unit``. Buffer uncertainties of a sum
are combined in quadrature (independent outlines); confidence areas are added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from glaviz.change.grid import DateMap
from glaviz.change.match import Matching
from glaviz.change.measure import PairMeasures

#: Area columns summed from glacier rows to totals; the rest are derived again.
SUMMED = ("area_t0_km2", "area_t1_km2", "unobserved_km2", "uncertainty_confidence_km2")
#: Glacier rows whose whole area at the other date is at least this share unobserved are not
#: called vanished or new: nothing was seen there (they stay ``same``, without the other id).
UNSEEN_SHARE = 0.5


@dataclass(frozen=True)
class Methods:
    """Which uncertainties are computed, and the buffer's size."""

    buffer: bool
    confidence: bool
    buffer_px: float
    pixel_m: float


def glacier_rows(
    d0: DateMap, d1: DateMap, matching: Matching, m: PairMeasures, methods: Methods
) -> list[dict[str, Any]]:
    """The glacier-level rows of one date pair (before the --min-area filter)."""
    assert d0.units is not None and d1.units is not None
    years = (d1.date - d0.date).days / 365.25
    buffer = m.buffer_km2(methods.buffer_px, methods.pixel_m) if methods.buffer else None
    low = m.low_confidence if methods.confidence else None
    ref_field = d0.units.ref_field or d1.units.ref_field
    rows = []
    for g in range(1, matching.n_groups + 1):
        a, b = matching.members0[g - 1], matching.members1[g - 1]
        kind = _seen_kind(matching.kinds[g - 1], m, g)
        row: dict[str, Any] = {
            "level": "glacier",
            "unit": str(g),
            "date_t0": d0.date.isoformat(),
            "date_t1": d1.date.isoformat(),
            "match": kind,
            "id_t0": ";".join(d0.units.ids[k - 1] for k in a),
            "id_t1": ";".join(d1.units.ids[k - 1] for k in b),
        }
        if ref_field:
            refs = [d0.units.refs[k - 1] for k in a] + [d1.units.refs[k - 1] for k in b]
            row[ref_field] = ";".join(dict.fromkeys(r for r in refs if r)) or None
        row |= {
            "n_t0": len(a),
            "n_t1": len(b),
            "area_t0_km2": float(m.area0[g]),
            "area_t1_km2": float(m.area1[g]),
            "unobserved_km2": float(m.unobserved[g]),
            "uncertainty_buffer_km2": float(buffer[g]) if buffer is not None else math.nan,
            "uncertainty_confidence_km2": float(low[g]) if low is not None else math.nan,
            "whole_t0_km2": float(m.whole0[g]),
            "whole_t1_km2": float(m.whole1[g]),
            "complex": _first([d0.units.complexes[k - 1] for k in a])
            or _first([d1.units.complexes[k - 1] for k in b]),
            "region": _first([d0.units.regions[k - 1] for k in a])
            or _first([d1.units.regions[k - 1] for k in b]),
        }
        rows.append(derive(row, years))
    return rows


def _seen_kind(kind: str, m: PairMeasures, g: int) -> str:
    if kind == "vanished" and m.unobserved[g] >= UNSEEN_SHARE * m.whole0[g]:
        return "same"
    if kind == "new" and m.unobserved[g] >= UNSEEN_SHARE * m.whole1[g]:
        return "same"
    return kind


def _first(values: list[str | None]) -> str | None:
    return next((v for v in values if v), None)


def derive(row: dict[str, Any], years: float) -> dict[str, Any]:
    """Change, rates and significance from a row's areas and uncertainties (in place)."""
    a0, a1 = row["area_t0_km2"], row["area_t1_km2"]
    change = a1 - a0
    pct = 100.0 * change / a0 if a0 > 0 else math.nan
    row["change_km2"] = change
    row["change_pct"] = pct
    row["rate_km2_yr"] = change / years
    row["rate_pct_yr"] = pct / years
    known = [
        u
        for u in (row["uncertainty_buffer_km2"], row["uncertainty_confidence_km2"])
        if not math.isnan(u)
    ]
    row["significant"] = bool(known) and abs(change) > max(known)
    return row


def totals(rows: list[dict[str, Any]], years_of: dict[tuple[str, str], float]) -> list[dict]:
    """Sums per complex, per region and in total, for each date pair of ``rows``."""
    out: list[dict[str, Any]] = []
    pairs = sorted({(r["date_t0"], r["date_t1"]) for r in rows})
    for pair in pairs:
        mine = [r for r in rows if (r["date_t0"], r["date_t1"]) == pair]
        for level in ("complex", "region"):
            units = sorted({r[level] for r in mine if r.get(level)})
            for unit in units:
                part = [r for r in mine if r.get(level) == unit]
                out.append(_sum(part, level, unit, pair, years_of[pair]))
        out.append(_sum(mine, "total", "all", pair, years_of[pair]))
    return out


def _sum(
    rows: list[dict[str, Any]], level: str, unit: str, pair: tuple[str, str], years: float
) -> dict[str, Any]:
    row: dict[str, Any] = {"level": level, "unit": unit, "date_t0": pair[0], "date_t1": pair[1]}
    row["match"] = None
    row["n_t0"] = int(sum(r["n_t0"] for r in rows))
    row["n_t1"] = int(sum(r["n_t1"] for r in rows))
    for name in SUMMED:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        row[name] = float(values.sum()) if len(values) else 0.0
    buffers = np.array([r["uncertainty_buffer_km2"] for r in rows], dtype=np.float64)
    row["uncertainty_buffer_km2"] = float(np.sqrt(np.sum(buffers**2))) if len(buffers) else 0.0
    return derive(row, years)
