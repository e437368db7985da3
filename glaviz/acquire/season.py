"""The time window of a search: an explicit ``--dates`` range, or a season within ``--year``.

Glacier outlines are mapped at the end of the ablation season, when the seasonal snow has melted
furthest and the glacier edges show. By default the season follows the hemisphere of the AOI's
centre: 1 August to 15 October in the north, 1 February to 15 April in the south (the same
months, half a year apart). ``--season MM-DD/MM-DD`` replaces it; a season whose end comes before
its start (``12-01/03-31``) starts in ``--year`` and ends in the next year.
"""

from __future__ import annotations

from datetime import date

from glaviz.config.acquire import parse_dates, parse_season

MonthDay = tuple[int, int]

#: End of the ablation season, northern hemisphere (centre latitude ≥ 0).
NORTH_SEASON: tuple[MonthDay, MonthDay] = ((8, 1), (10, 15))
#: End of the ablation season, southern hemisphere (centre latitude < 0).
SOUTH_SEASON: tuple[MonthDay, MonthDay] = ((2, 1), (4, 15))


def default_season(centre_lat: float) -> tuple[MonthDay, MonthDay]:
    """The end-of-ablation season of the hemisphere ``centre_lat`` lies in (the equator counts as
    north: the tropical glaciers of the Andes south of it and of Africa on both sides have no
    single season, and say so best with ``--season``)."""
    return NORTH_SEASON if centre_lat >= 0 else SOUTH_SEASON


def _day(year: int, month_day: MonthDay) -> date:
    month, day = month_day
    if (month, day) == (2, 29):  # a leap day in a common year is the last day of February
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return date(year, month, day)


def season_window(year: int, season: tuple[MonthDay, MonthDay]) -> tuple[date, date]:
    """The dates of ``season`` in ``year``, both inclusive; a wrapping season ends a year later."""
    start, end = season
    end_year = year + 1 if end < start else year
    return _day(year, start), _day(end_year, end)


def search_window(
    *, year: int | None, season: str | None, dates: str | None, centre_lat: float
) -> tuple[date, date]:
    """The search's first and last day from the options (validated by ``AcquireConfig``)."""
    if dates is not None:
        return parse_dates(dates)
    if year is None:
        raise ValueError("a time window needs --year or --dates")
    chosen = parse_season(season) if season is not None else default_season(centre_lat)
    return season_window(year, chosen)


def describe_window(start: date, end: date) -> str:
    """``2023-08-01/2023-10-15``: the window as the options write it, for messages and records."""
    return f"{start.isoformat()}/{end.isoformat()}"
