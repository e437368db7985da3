"""Which dates to use: granules grouped into dates, ranked by the cloud inside the AOI.

One *candidate* is one acquisition date: the granules (tiles) of that day that the AOI crosses,
mosaicked into one scene. Candidates are ranked by cloud fraction inside the AOI (from the
products' own masks, :mod:`glaviz.acquire.clouds`), ties broken by AOI coverage (more first),
then by date (earlier first, so the ranking is reproducible). Cloud fractions that differ by
less than :data:`CLOUD_TIE` count as tied: a few pixels of cloud should not beat a date that
covers the whole AOI instead of half of it.

``best`` takes the first candidate; ``median`` the first N.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from glaviz.acquire.clouds import AoiCloud
from glaviz.acquire.granule import Granule
from glaviz.acquire.metadata import baseline_tuple

#: Cloud fractions closer than this (0.1 % of the AOI) are a tie, decided by coverage.
CLOUD_TIE = 0.001


@dataclass(frozen=True)
class Candidate:
    """One date: its granules, and the cloud and coverage of the AOI on that date."""

    day: date
    granules: tuple[Granule, ...]
    cloud: AoiCloud

    @property
    def cloud_fraction(self) -> float:
        return self.cloud.cloud_fraction

    @property
    def coverage(self) -> float:
        return self.cloud.coverage

    def sort_key(self) -> tuple[int, float, date]:
        """Cloud (in steps of :data:`CLOUD_TIE`), then coverage (more first), then date."""
        return (round(self.cloud_fraction / CLOUD_TIE), -self.coverage, self.day)

    def to_json(self) -> dict[str, Any]:
        """The candidate as ``--search-only --json`` lists it and ``acquire.json`` records it."""
        return {
            "date": self.day.isoformat(),
            "tiles": [g.tile for g in self.granules],
            "items": [g.item_id for g in self.granules],
            "cloud_in_aoi": round(self.cloud_fraction, 4),
            "cloud_source": self.cloud.source,
            "coverage": round(self.coverage, 4),
            "baselines": sorted({g.baseline or "unknown" for g in self.granules}),
            "scene_cloud_pct": [g.scene_cloud_pct for g in self.granules],
        }


def by_day(granules: Iterable[Granule]) -> dict[date, list[Granule]]:
    """Granules grouped by acquisition date, one per tile.

    A tile listed twice on one day is a reprocessing of the same acquisition (a newer processing
    baseline); the newest baseline is kept, so a date is never mosaicked with itself.
    """
    newest: dict[tuple[date, str], Granule] = {}
    for granule in granules:
        key = (granule.day, granule.tile)
        kept = newest.get(key)
        if kept is None or _baseline_order(granule) > _baseline_order(kept):
            newest[key] = granule
    days: dict[date, list[Granule]] = {}
    for (day, _tile), granule in sorted(newest.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        days.setdefault(day, []).append(granule)
    return days


def _baseline_order(granule: Granule) -> tuple[int, int]:
    return baseline_tuple(granule.baseline) or (-1, -1)


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates best first; those that do not cover the AOI at all are left out."""
    return sorted((c for c in candidates if c.coverage > 0), key=Candidate.sort_key)


def choose(ranked: Sequence[Candidate], *, composite: str, median_dates: int) -> list[Candidate]:
    """The dates a composite uses: the best one, or the ``median_dates`` best ones."""
    return list(ranked[:1]) if composite == "best" else list(ranked[:median_dates])


def composite_date(dates: Sequence[date]) -> date:
    """The one date a composite stands for: its date, or for a median the middle of its dates
    (the earlier of the two middle ones for an even count), so a series of yearly composites
    stays in order and each is dated by an image it holds."""
    ordered = sorted(dates)
    return ordered[(len(ordered) - 1) // 2]
