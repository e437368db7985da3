"""``glaviz acquire`` options: a region and a time window in, a deploy-ready folder out.

The checks here need nothing but the values themselves (a bbox's numbers, the text of a date
range), so a mistyped option fails before any catalogue is asked. What needs a file or a rule
about the Earth (reading an AOI file, its area, the hemisphere's season) lives in
``glaviz.acquire.aoi`` and ``glaviz.acquire.season``, which use the parsers defined here.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from glaviz.config.base import CommandConfig, overwrite_field, skip_existing_field

Source = Literal["earth-search", "cdse"]
#: The first Sentinel-2 images (Sentinel-2A) were taken in June 2015.
FIRST_YEAR = 2015
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_EPSG = re.compile(r"^EPSG:(\d{4,5})$", re.IGNORECASE)


def parse_bbox(value: object) -> object:
    """``"W,S,E,N"`` (the CLI's one comma-separated value) or a sequence → four floats."""
    if not isinstance(value, str):
        return value
    message = f"bbox must be four numbers W,S,E,N in degrees, got {value!r}"
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 4:
        raise ValueError(message)
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(message) from None


def check_bbox(bbox: tuple[float, float, float, float]) -> None:
    """Raise ValueError for a bbox that is out of range or inverted (one message each)."""
    west, south, east, north = bbox
    for name, lon in (("west", west), ("east", east)):
        if not -180 <= lon <= 180:
            raise ValueError(f"bbox {name} longitude {lon} is outside -180..180")
    for name, lat in (("south", south), ("north", north)):
        if not -90 <= lat <= 90:
            raise ValueError(f"bbox {name} latitude {lat} is outside -90..90")
    if west >= east:
        raise ValueError(
            f"bbox is inverted: west {west} is not less than east {east} (order W,S,E,N; an "
            "AOI across the antimeridian must be split into two runs)"
        )
    if south >= north:
        raise ValueError(
            f"bbox is inverted: south {south} is not less than north {north} (order W,S,E,N)"
        )


def parse_month_day(text: str, *, what: str) -> tuple[int, int]:
    """``"MM-DD"`` → (month, day), checked against a leap year so that 02-29 is accepted."""
    match = _MONTH_DAY.match(text.strip())
    if match is None:
        raise ValueError(f"{what} {text!r} is not MM-DD")
    month, day = int(match.group(1)), int(match.group(2))
    try:
        date(2000, month, day)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a day of the year") from None
    return month, day


def parse_season(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``"MM-DD/MM-DD"`` → ((month, day), (month, day)); an end before the start wraps into the
    next year (a southern ``12-01/03-31`` summer)."""
    parts = text.split("/")
    if len(parts) != 2:
        raise ValueError(f"season {text!r} is not MM-DD/MM-DD (e.g. 08-01/10-15)")
    start = parse_month_day(parts[0], what="season start")
    end = parse_month_day(parts[1], what="season end")
    if start == end:
        raise ValueError(f"season {text!r} starts and ends on the same day; give a range")
    return start, end


def parse_dates(text: str) -> tuple[date, date]:
    """``"YYYY-MM-DD/YYYY-MM-DD"`` → (start, end), both inclusive; reversed ranges are errors."""
    parts = text.split("/")
    if len(parts) != 2:
        raise ValueError(f"dates {text!r} are not YYYY-MM-DD/YYYY-MM-DD")
    try:
        start, end = (date.fromisoformat(p.strip()) for p in parts)
    except ValueError:
        raise ValueError(f"dates {text!r} are not YYYY-MM-DD/YYYY-MM-DD") from None
    if end < start:
        raise ValueError(f"dates are reversed: {start} is after {end}; give START/END")
    if end.year < FIRST_YEAR:
        raise ValueError(f"dates {text!r} end before Sentinel-2's first images ({FIRST_YEAR})")
    return start, end


def parse_crs(text: str) -> int | None:
    """``"auto"`` → None (UTM zone of the AOI centre), ``"EPSG:N"`` → N."""
    if text.strip().lower() == "auto":
        return None
    match = _EPSG.match(text.strip())
    if match is None:
        raise ValueError(f"crs {text!r} is neither 'auto' nor EPSG:N (e.g. EPSG:32632)")
    return int(match.group(1))


class AcquireConfig(CommandConfig):
    """Everything one ``glaviz acquire`` run depends on, besides what the catalogues hold."""

    bbox: tuple[float, float, float, float] | None = Field(
        None,
        description="Area of interest as W,S,E,N in degrees (lon/lat, WGS84).",
        json_schema_extra={"metavar": "W,S,E,N"},
    )
    aoi: Path | None = Field(
        None, description="Area of interest as a vector file (GeoJSON, GeoPackage, shapefile)."
    )
    year: int | None = Field(
        None,
        ge=FIRST_YEAR,
        le=2100,
        description="Year to search, within --season (default: the end of the ablation season "
        "of the AOI's hemisphere).",
    )
    season: str | None = Field(
        None,
        description="Window within --year as MM-DD/MM-DD (default: 08-01/10-15 north of the "
        "equator, 02-01/04-15 south of it).",
    )
    dates: str | None = Field(
        None,
        description="Explicit window YYYY-MM-DD/YYYY-MM-DD (both inclusive), instead of --year.",
    )
    max_cloud: float = Field(
        20.0,
        ge=0,
        le=100,
        description="Scene-level cloud cover pre-filter in percent; candidates are then ranked "
        "by the cloud inside the AOI.",
    )
    source: Source = Field(
        "earth-search",
        description="Catalogue: earth-search (no account) or cdse (Copernicus Data Space; "
        "downloads need credentials in the environment or ~/.netrc).",
    )
    level: Literal["l1c", "l2a"] = Field(
        "l1c",
        description="l1c: top-of-atmosphere reflectance, as the models were trained; l2a: "
        "surface reflectance (a warning, recorded as BOA).",
    )
    composite: Literal["best", "median"] = Field(
        "best",
        description="best: the least cloudy date, its tiles mosaicked; median: per-pixel median "
        "of the --median-dates best dates, clouds masked.",
    )
    median_dates: int = Field(
        3, ge=1, le=50, description="Dates in a median composite (the best N by cloud)."
    )
    crs: str = Field("auto", description="Output CRS: auto (UTM zone of the AOI centre) or EPSG:N.")
    resolution: float = Field(10.0, gt=0, le=1000, description="Pixel size in metres.")
    search_only: bool = Field(
        False, description="List the ranked candidates; only their cloud masks are downloaded."
    )
    stac_url: str | None = Field(
        None,
        description="STAC API of a mirror (default: $GLAVIZ_STAC_URL, else the source's "
        "public catalogue).",
    )
    allow_large: bool = Field(
        False, description="Accept an AOI above the area limit (a long download)."
    )
    output: Path = Field(description="Output folder (optical.tif, elevation.tif, stack.tif, …).")
    overwrite: bool = overwrite_field("outputs already in the folder")
    skip_existing: bool = skip_existing_field("the output folder")

    @field_validator("bbox", mode="before")
    @classmethod
    def _parse_bbox(cls, value: object) -> object:
        return parse_bbox(value)

    @field_validator("bbox")
    @classmethod
    def _check_bbox(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is not None:
            check_bbox(value)
        return value

    @field_validator("season")
    @classmethod
    def _check_season(cls, value: str | None) -> str | None:
        if value is not None:
            parse_season(value)
        return value

    @field_validator("dates")
    @classmethod
    def _check_dates(cls, value: str | None) -> str | None:
        if value is not None:
            parse_dates(value)
        return value

    @field_validator("crs")
    @classmethod
    def _check_crs(cls, value: str) -> str:
        parse_crs(value)
        return value

    @model_validator(mode="after")
    def _one_region_one_window(self) -> AcquireConfig:
        if (self.bbox is None) == (self.aoi is None):
            raise ValueError("give exactly one area of interest: --bbox W,S,E,N or --aoi FILE")
        if (self.year is None) == (self.dates is None):
            raise ValueError(
                "give exactly one time window: --year YYYY (with an optional --season) or "
                "--dates START/END"
            )
        if self.season is not None and self.year is None:
            raise ValueError("--season needs --year (with --dates, the dates are the window)")
        return self

    @property
    def epsg(self) -> int | None:
        """The requested output EPSG code; None means the UTM zone of the AOI centre."""
        return parse_crs(self.crs)

    def output_files(self) -> list[Path]:
        """Every file of the folder, the record (written last) at the end; a search alone writes
        nothing."""
        if self.search_only:
            return []
        names = ("optical.tif", "elevation.tif", "stack.tif", "quicklook.png", "acquire.json")
        return [self.output / name for name in names]

    def record_path(self) -> Path | None:
        return None if self.search_only else self.output / "acquire.json"
