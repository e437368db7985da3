"""``compute_change``: the engine of ``glaviz change``, from inputs to the written folder.

It reads top to bottom as the data flows: resolve the inputs and their dates (every refusal
before any raster is read), take the earliest date's grid, read every date onto it, label each
date's glaciers, check that consecutive dates share observed pixels; only then open the output
folder and, per consecutive date pair, match the glaciers, measure them, and collect rows,
polygons and change.tif's band. The outputs are committed together at the end, run.json last.
All dates are held in memory (labels, observed and low-confidence masks: about 6 bytes per
pixel each); docs/change.md has the measured figures.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.change.grid import DateMap, read_date, working_grid
from glaviz.change.inputs import DateSource, resolve_inputs
from glaviz.change.match import STRIP_ROWS, match
from glaviz.change.measure import (
    GAINED,
    LOST,
    UNOBSERVED,
    PixelAreas,
    measure_pair,
    perimeters_m,
    pixel_size_m,
)
from glaviz.change.table import Methods, glacier_rows, totals
from glaviz.change.units import ReferenceUnits, label_date
from glaviz.config.change import CHANGE_OUTPUTS, ChangeConfig
from glaviz.errors import ConfigError, InputError
from glaviz.inventory.grid import Grid
from glaviz.util.progress import Progress

if TYPE_CHECKING:
    from geopandas import GeoDataFrame
    from pandas import DataFrame

log = logging.getLogger("glaviz.change")


@dataclass(frozen=True)
class ChangeResult:
    """What one change run wrote: the glacier table (a GeoDataFrame), the sums, the counts."""

    output: Path
    table: GeoDataFrame  #: one row per group of glaciers and date pair
    totals: DataFrame  #: sums per complex, region and in total
    dates: list[str]
    matches: dict[str, int]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """The line ``glaviz change`` prints."""
        total = self.totals[self.totals["level"] == "total"]
        parts = [
            f"{r.date_t0} → {r.date_t1}: {r.change_km2:+.3f} km² ({r.change_pct:+.1f} %)"
            for r in total.itertuples()
        ]
        kinds = ", ".join(f"{v} {k}" for k, v in sorted(self.matches.items()))
        return (
            f"{len(self.table)} glacier rows over {len(self.dates)} dates ({kinds}); "
            + "; ".join(parts)
            + f"; {self.seconds:.1f} s; wrote {self.output}"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz change``, less the ``status`` the CLI adds."""
        total = self.totals[self.totals["level"] == "total"]
        return {
            "outputs": [str(self.output / name) for name in CHANGE_OUTPUTS],
            "dates": self.dates,
            "counts": {"rows": len(self.table), **self.matches},
            "totals": [_plain(r) for r in total.to_dict("records")],
            "timings": {**self.timings, "total_s": self.seconds},
        }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and np.isnan(v):
            out[k] = None
        elif hasattr(v, "item"):
            out[k] = v.item()
        else:
            out[k] = v
    return out


@dataclass
class _Collected:
    """Rows and polygons of every date pair."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    geometries: list[Any] = field(default_factory=list)
    layers: dict[str, list[Any]] = field(
        default_factory=lambda: {"lost": [], "gained": [], "unobserved": []}
    )
    #: Outline length of every glacier of every date (metres, index = label).
    perimeters: list[np.ndarray] = field(default_factory=list)


def _labels(date: DateMap) -> np.ndarray:
    assert date.labels is not None and date.units is not None, "dates are labelled on reading"
    return date.labels


def compute_change(config: ChangeConfig, *, progress: bool = False) -> ChangeResult:
    """Compare the glaciers of every consecutive pair of dates and write ``config.output``."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    sources = resolve_inputs(config)
    grid = working_grid(sources[0])
    with Progress(progress, total=len(sources), description="Reading dates") as bar:
        dates = _read_dates(sources, grid, config, bar)
    methods = _methods(config, dates, grid)
    _check_pairs(dates)
    timings["read_s"] = time.perf_counter() - t0
    from glaviz.runs.outputs import OutputFolder

    with OutputFolder(
        config.output, CHANGE_OUTPUTS, overwrite=config.overwrite, command="change"
    ) as folder:
        t = time.perf_counter()
        areas = PixelAreas(grid)
        collected = _compare(dates, grid, areas, methods, config, folder, progress)
        timings["compare_s"] = time.perf_counter() - t
        t = time.perf_counter()
        result = _write(dates, grid, areas, methods, folder, collected)
        timings["write_s"] = time.perf_counter() - t
        record = _record(config, sources, dates, grid, result, timings, t0)
        folder.write_record(record)
        folder.commit()
    return ChangeResult(
        output=config.output,
        table=result["table"],
        totals=result["totals"],
        dates=[d.date.isoformat() for d in dates],
        matches=result["matches"],
        seconds=time.perf_counter() - t0,
        timings=timings,
    )


def _read_dates(
    sources: list[DateSource], grid: Grid, config: ChangeConfig, bar: Progress
) -> list[DateMap]:
    """Every date on the grid and labelled (the reference, if any, cut along its divides)."""
    reference = (
        ReferenceUnits.read(config.reference, grid, config.reference_id)
        if config.reference is not None
        else None
    )
    dates = []
    for source in sources:
        date = read_date(source, grid, reference_id=config.reference_id)
        label_date(date, reference)
        dates.append(date)
        bar.advance()
    return dates


def _methods(config: ChangeConfig, dates: list[DateMap], grid: Grid) -> Methods:
    """Which uncertainties can be computed; refuses the confidence method without confidence."""
    with_conf = [d for d in dates if d.low is not None]
    wants_conf = config.uncertainty in ("confidence", "both")
    if config.uncertainty == "confidence" and not with_conf:
        raise ConfigError(
            "--uncertainty confidence needs a confidence raster (deploy folders or batch roots "
            "have confidence.tif), and no input has one; use --uncertainty buffer"
        )
    if wants_conf and not with_conf:
        log.warning("no input has a confidence raster: uncertainty_confidence_km2 stays empty")
    for d in with_conf:
        if d.calibrated is False:
            log.warning(
                "the confidence of %s was not calibrated (deploy without --calibration); the "
                "confidence uncertainty assumes calibrated confidence",
                d.source.name,
            )
    return Methods(
        buffer=config.uncertainty in ("buffer", "both"),
        confidence=wants_conf and bool(with_conf),
        buffer_px=config.buffer_px,
        pixel_m=pixel_size_m(grid),
    )


def _check_pairs(dates: list[DateMap]) -> None:
    """Refuse consecutive dates that share no observed pixel (they cannot be compared)."""
    for d0, d1 in itertools.pairwise(dates):
        if not _any_both(d0.valid, d1.valid):
            raise InputError(
                f"{d0.source.name} ({d0.date}) and {d1.source.name} ({d1.date}) share no "
                "observed pixel: the inputs do not overlap; compare inputs of the same region"
            )


def _any_both(a: np.ndarray, b: np.ndarray) -> bool:
    return any(
        bool((a[r : r + STRIP_ROWS] & b[r : r + STRIP_ROWS]).any())
        for r in range(0, a.shape[0], STRIP_ROWS)
    )


def _compare(
    dates: list[DateMap],
    grid: Grid,
    areas: PixelAreas,
    methods: Methods,
    config: ChangeConfig,
    folder: Any,
    progress: bool,
) -> _Collected:
    """Match and measure each consecutive pair; change.tif's bands are written as they come."""
    from glaviz.change.outputs import ChangeRaster

    pairs = list(itertools.pairwise(dates))
    bands = [f"{a.date.isoformat()}/{b.date.isoformat()}" for a, b in pairs]
    collected = _Collected()
    collected.perimeters = [perimeters_m(_labels(d), len(d.units or ()), grid) for d in dates]
    perimeters = collected.perimeters
    raster = ChangeRaster(folder.scratch("change.tif"), grid, bands)
    try:
        with Progress(progress, total=len(pairs), description="Comparing dates") as bar:
            for k, (d0, d1) in enumerate(pairs):
                codes = _one_pair(d0, d1, grid, areas, methods, perimeters[k : k + 2], collected)
                raster.write(k + 1, codes)
                bar.advance()
        raster.finish(folder.temp("change.tif"))
    finally:
        raster.close()
    _drop_small(collected, config.min_area_km2)
    return collected


def _one_pair(
    d0: DateMap,
    d1: DateMap,
    grid: Grid,
    areas: PixelAreas,
    methods: Methods,
    perimeters: list[np.ndarray],
    out: _Collected,
) -> np.ndarray:
    """Match, measure and collect one date pair; returns its change.tif codes."""
    from glaviz.change.outputs import footprint, group_polygons, polygon_layer

    assert d0.labels is not None and d1.labels is not None
    assert d0.units is not None and d1.units is not None
    valid = d0.valid & d1.valid
    low = d0.low if d1.low is None else d1.low if d0.low is None else d0.low | d1.low
    present0 = np.bincount(d0.labels.ravel(), minlength=len(d0.units) + 1) > 0
    present1 = np.bincount(d1.labels.ravel(), minlength=len(d1.units) + 1) > 0
    matching = match(d0.labels, d1.labels, d0.units, d1.units, present0, present1)
    measures = measure_pair(
        d0.labels, d1.labels, valid, low, matching, areas, (perimeters[0], perimeters[1])
    )
    del valid, low
    rows = glacier_rows(d0, d1, matching, measures, methods)
    pair = (d0.date.isoformat(), d1.date.isoformat())
    groups = footprint(d0.labels, d1.labels, matching)
    shapes = group_polygons(groups, groups > 0, grid)
    out.rows.extend(rows)
    out.geometries.extend(shapes.get(int(r["unit"])) for r in rows)
    codes = measures.codes
    for name, code in (("lost", LOST), ("gained", GAINED), ("unobserved", UNOBSERVED)):
        mask = codes == code if code != UNOBSERVED else (codes == code) & (groups > 0)
        out.layers[name].append(polygon_layer(group_polygons(groups, mask, grid), pair, grid))
    return codes


def _drop_small(c: _Collected, min_area_km2: float) -> None:
    """Leave out groups below --min-area at both dates, with their polygons."""
    if min_area_km2 <= 0:
        return
    keep = [max(r["whole_t0_km2"], r["whole_t1_km2"]) >= min_area_km2 for r in c.rows]
    dropped = {_key(r) for r, k in zip(c.rows, keep, strict=True) if not k}
    c.rows = [r for r, k in zip(c.rows, keep, strict=True) if k]
    c.geometries = [g for g, k in zip(c.geometries, keep, strict=True) if k]
    for name, frames in c.layers.items():
        c.layers[name] = [
            f.loc[np.array([_key(r) not in dropped for r in f.to_dict("records")], dtype=bool)]
            for f in frames
        ]


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    """A glacier row's or polygon's date pair and group."""
    return (row["date_t0"], row["date_t1"], row["unit"])


def _write(
    dates: list[DateMap],
    grid: Grid,
    areas: PixelAreas,
    methods: Methods,
    folder: Any,
    c: _Collected,
) -> dict[str, Any]:
    """change.gpkg, change.csv and change.png under their temporary names."""
    import pandas as pd

    from glaviz.change.figure import map_codes, write_png
    from glaviz.change.outputs import glacier_frame, ordered_columns, write_csv, write_gpkg

    years = {
        (a.date.isoformat(), b.date.isoformat()): (b.date - a.date).days / 365.25
        for a, b in itertools.pairwise(dates)
    }
    sums = totals(c.rows, years)
    table = glacier_frame(c.rows, c.geometries, grid)
    sum_frame = pd.DataFrame(sums).reindex(columns=ordered_columns(sums))
    layers: dict[str, Any] = {"glaciers": table}
    for name, frames in c.layers.items():
        layers[name] = pd.concat(frames, ignore_index=True) if frames else frames
    layers["totals"] = sum_frame
    gpkg = folder.temp("change.gpkg")
    write_gpkg(gpkg, layers)
    write_csv(folder.temp("change.csv"), c.rows + sums)
    valid_all = _observed_everywhere(dates)
    series = _area_series(dates, c.perimeters, valid_all, areas, methods)
    codes, factor = map_codes(_labels(dates[0]), _labels(dates[-1]), valid_all)
    write_png(folder.temp("change.png"), codes, factor, grid, series)
    matches: dict[str, int] = {}
    for r in c.rows:
        matches[r["match"]] = matches.get(r["match"], 0) + 1
    return {"table": table, "totals": sum_frame, "matches": matches, "series": series}


def _observed_everywhere(dates: list[DateMap]) -> np.ndarray:
    valid = dates[0].valid.copy()
    for d in dates[1:]:
        valid &= d.valid
    return valid


def _area_series(
    dates: list[DateMap],
    perimeters: list[np.ndarray],
    valid: np.ndarray,
    areas: PixelAreas,
    methods: Methods,
) -> Any:
    """Total area per date over the pixels observed at every date, and its buffer uncertainty
    (each glacier's, combined in quadrature)."""
    from glaviz.change.figure import AreaSeries

    totals_km2, buffers = [], []
    height = valid.shape[0]
    for d, perimeter in zip(dates, perimeters, strict=True):
        labels = _labels(d)
        total = 0.0
        for r in range(0, height, STRIP_ROWS):
            ice = (labels[r : r + STRIP_ROWS] > 0) & valid[r : r + STRIP_ROWS]
            total += float(areas.strip(r, min(r + STRIP_ROWS, height))[ice].sum())
        totals_km2.append(total)
        per = perimeter * methods.buffer_px * methods.pixel_m / 1e6
        buffers.append(float(np.sqrt(np.sum(per**2))))
    return AreaSeries([d.date.isoformat() for d in dates], totals_km2, buffers)


def _record(
    config: ChangeConfig,
    sources: list[DateSource],
    dates: list[DateMap],
    grid: Grid,
    result: dict[str, Any],
    timings: dict[str, float],
    t0: float,
) -> dict[str, Any]:
    from glaviz.runs.records import run_record

    series = result["series"]
    return {
        **run_record(config, command="change"),
        "grid": {
            "crs": str(grid.crs),
            "width": grid.width,
            "height": grid.height,
            "transform": list(grid.transform)[:6],
            "pixel_m": [grid.xres, grid.yres],
        },
        "dates": [
            {
                "date": s.date.isoformat(),
                "input": s.name,
                "files": [str(p) for p in s.files],
                "confidence": d.low is not None,
                "confidence_calibrated": d.calibrated,
                "total_area_km2": series.area_km2[k],
            }
            for k, (s, d) in enumerate(zip(sources, dates, strict=True))
        ],
        "matches": result["matches"],
        "totals": [_plain(r) for r in result["totals"].to_dict("records")],
        "timings": {**timings, "total_s": time.perf_counter() - t0},
    }
