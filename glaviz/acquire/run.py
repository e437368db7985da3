"""The engine of ``glaviz acquire``: search → rank dates → fetch → composite → outputs → record.

:func:`acquire` reads as the data flow. The search (:mod:`glaviz.acquire.search`) hands over
plain :class:`~glaviz.acquire.granule.Granule` records; dates are ranked by the cloud inside the
AOI from the products' own masks (fetched into the cache, a few hundred kB each); with
``--search-only`` that ranking is the result and no band is fetched. Otherwise the chosen
dates' bands and the DEM tiles are fetched into the cache (:mod:`glaviz.acquire.read`) and the
folder is written through :class:`~glaviz.runs.outputs.OutputFolder`: every file under a
temporary name, renamed together at the end, ``acquire.json`` last, so a failed or interrupted
run leaves nothing that looks finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.acquire.clouds import CloudMask, aoi_cloud, footprint_mask, mask_kind
from glaviz.acquire.composite import GranuleFiles, GranuleReader, median, mosaic
from glaviz.acquire.dem import DemReader, ordered
from glaviz.acquire.granule import OPTICAL_BANDS, DemTile, Granule
from glaviz.acquire.grid import Grid, target_grid
from glaviz.acquire.metadata import Radiometry, has_offset, read_radiometry
from glaviz.acquire.outputs import (
    OUTPUT_NAMES,
    RECORD_NAME,
    Preview,
    Tally,
    write_elevation,
    write_optical,
)
from glaviz.acquire.read import GranuleCache, cache_key
from glaviz.acquire.record import provenance
from glaviz.acquire.select import Candidate, by_day, choose, composite_date, rank
from glaviz.errors import InputError
from glaviz.util.rasters import format_bounds

if TYPE_CHECKING:
    from glaviz.acquire.search import SearchRequest
    from glaviz.config.acquire import AcquireConfig

log = logging.getLogger("glaviz.acquire")

#: Pixel size at which dates are ranked: the resolution of MSK_CLASSI, and 36 times fewer
#: pixels than 10 m.
RANK_RESOLUTION_M = 60.0
#: GDAL block cache (MB) while the outputs are written: the tiles of one window of every
#: granule in use, not a share of the machine's memory.
GDAL_CACHE_MB = 256


@dataclass(frozen=True)
class Plan:
    """What the search found: the request, the output grid, and the dates best first."""

    request: SearchRequest
    grid: Grid
    ranked: list[Candidate]
    granules: int


@dataclass(frozen=True)
class SearchResult:
    """``--search-only``: the ranked candidates, nothing fetched but their cloud masks."""

    plan: Plan
    seconds: float

    def summary(self) -> str:
        """A table: rank, date, tiles, cloud in the AOI, coverage, processing baseline."""
        request = self.plan.request
        lines = [
            f"{len(self.plan.ranked)} date(s) from {self.plan.granules} granule(s), "
            f"{request.start} to {request.end}, best first:",
            f"{'rank':>4}  {'date':10}  {'cloud in AOI':>12}  {'coverage':>8}  "
            f"{'baseline':8}  tiles",
        ]
        for i, c in enumerate(self.plan.ranked, start=1):
            lines.append(
                f"{i:>4}  {c.day.isoformat():10}  {100 * c.cloud_fraction:>10.1f} %  "
                f"{100 * c.coverage:>6.1f} %  {','.join(c.to_json()['baselines']):8}  "
                f"{' '.join(g.tile for g in c.granules)}"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """``--json``: the candidates as acquire.json records them."""
        return {
            "candidates": [c.to_json() for c in self.plan.ranked],
            "counts": {"candidates": len(self.plan.ranked), "granules": self.plan.granules},
            "timings": {"total_s": round(self.seconds, 3)},
        }


@dataclass(frozen=True)
class AcquireResult:
    """What an acquisition wrote."""

    output: Path
    files: list[Path]
    grid: Grid
    dates: tuple[date, ...]
    composite: str
    radiometry: str
    coverage: float
    cloud_fraction: float
    fetched: int
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """The line ``glaviz acquire`` prints."""
        days = ", ".join(d.isoformat() for d in self.dates)
        return (
            f"Wrote {self.output}: {self.grid.width} × {self.grid.height} px at "
            f"{self.grid.resolution:g} m ({self.grid.crs}), {self.radiometry} {self.composite} of "
            f"{days}; cloud {100 * self.cloud_fraction:.1f} %, coverage "
            f"{100 * self.coverage:.1f} %, {self.fetched} file(s) fetched, "
            f"{self.timings.get('total_s', 0.0):.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        """``--json``: outputs, counts and timings."""
        return {
            "outputs": [str(p) for p in self.files],
            "dates": [d.isoformat() for d in self.dates],
            "counts": {
                "width": self.grid.width,
                "height": self.grid.height,
                "dates": len(self.dates),
                "fetched": self.fetched,
            },
            "coverage": round(self.coverage, 4),
            "cloud_in_aoi": round(self.cloud_fraction, 4),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def acquire(config: AcquireConfig, *, progress: bool = False) -> AcquireResult | SearchResult:
    """Run ``glaviz acquire``: the ranked candidates (``search_only``) or the written folder."""
    started = time.perf_counter()
    cache = GranuleCache(progress=progress)
    plan = plan_acquisition(config, cache)
    if config.search_only:
        return SearchResult(plan=plan, seconds=time.perf_counter() - started)
    return write_acquisition(config, plan, cache, progress=progress, started=started)


def plan_acquisition(config: AcquireConfig, cache: GranuleCache) -> Plan:
    """Search the catalogue and rank the dates found by the cloud inside the AOI."""
    from glaviz.acquire.search import request_from_config, search_granules

    request = request_from_config(config)
    if config.level == "l2a":
        log.warning(
            "level l2a is surface (BOA) reflectance; the published models were trained on "
            "top-of-atmosphere (L1C) data, so expect lower accuracy; acquire.json records "
            'radiometry "BOA"'
        )
    granules = search_granules(request, stac_url=config.stac_url)
    grid = target_grid(request.bbox, epsg=config.epsg, resolution=config.resolution)
    ranked = rank_dates(granules, grid, cache, polygon=request.polygon)
    if not ranked:
        raise InputError(
            f"none of the {len(granules)} granule(s) found between {request.start} and "
            f"{request.end} covers the AOI {format_bounds(request.bbox)}; check the bbox, or "
            "widen the dates or --max-cloud"
        )
    return Plan(request=request, grid=grid, ranked=ranked, granules=len(granules))


def rank_dates(
    granules: Sequence[Granule],
    grid: Grid,
    cache: GranuleCache,
    *,
    polygon: Mapping[str, Any] | None = None,
) -> list[Candidate]:
    """One candidate per date, from the granules whose footprint reaches into the AOI, ranked.

    Cloud is read from each product's mask at :data:`RANK_RESOLUTION_M`, over the ``--aoi``
    ``polygon`` when there is one (a cloud over the rest of its bounding box does not count),
    else over the whole grid.
    """
    coarse = grid.coarsened(max(1, round(RANK_RESOLUTION_M / grid.resolution)))
    if polygon is not None:
        area = footprint_mask([polygon], coarse, all_touched=True)
    else:
        area = np.ones((coarse.height, coarse.width), dtype=bool)
    candidates = []
    for day, group in by_day(granules).items():
        inside = [g for g in group if (footprint_mask([g.footprint], coarse) & area).any()]
        if not inside:
            continue
        with ExitStack() as stack:
            masks = [_open_mask(stack, g, coarse, cache) for g in inside]
            scene = [g.scene_cloud_pct for g in inside if g.scene_cloud_pct is not None]
            cloud = aoi_cloud(
                [g.footprint for g in inside],
                masks,
                coarse,
                scene_cloud_pct=sum(scene) / len(scene) if scene else None,
                area=area,
            )
        candidates.append(Candidate(day=day, granules=tuple(inside), cloud=cloud))
    return rank(candidates)


def _open_mask(
    stack: ExitStack, granule: Granule, grid: Grid, cache: GranuleCache
) -> CloudMask | None:
    path = _mask_file(granule, cache)
    if path is None:
        return None
    return CloudMask(stack, path, grid, kind=mask_kind(granule.cloud_mask or ""))


def _mask_file(granule: Granule, cache: GranuleCache) -> Path | None:
    """The local cloud mask of ``granule`` (fetched into the cache), or None when it has none."""
    href = granule.cloud_mask
    if href is None:
        return None
    folder = cache_key(granule.collection, granule.item_id)
    if mask_kind(href) == "gml":
        return cache.file(href, folder, "MSK_CLOUDS_B00.gml")
    return cache.raster(href, folder, "cloud_mask")


def fetch_granule(granule: Granule, cache: GranuleCache) -> GranuleFiles:
    """Every part of ``granule`` as a local file, and its radiometric constants."""
    folder = cache_key(granule.collection, granule.item_id)
    missing = [b for b in OPTICAL_BANDS if b not in granule.bands]
    if missing:
        raise InputError(
            f"item {granule.item_id} has no asset for band(s) {', '.join(missing)}; it cannot "
            "make the six-band optical input"
        )
    bands = {b: cache.raster(granule.bands[b], folder, b) for b in OPTICAL_BANDS}
    return GranuleFiles(
        granule=granule,
        bands=bands,
        radiometry=_radiometry(granule, cache, folder),
        cloud_mask=_mask_file(granule, cache),
    )


def _radiometry(granule: Granule, cache: GranuleCache, folder: Path) -> Radiometry:
    """The product's constants from its metadata XML; without one, only for old baselines."""
    kind = "BOA" if granule.level == "l2a" else "TOA"
    if granule.metadata is not None:
        path = cache.file(granule.metadata, folder, "metadata.xml")
        radiometry = read_radiometry(path, baseline=granule.baseline)
        if granule.properties.get("earthsearch:boa_offset_applied") is True:
            # Earth Search shifted these L2A COGs back onto the scale of the old baselines
            # (its item says so): the offset is in the DNs already and must not be added twice.
            return replace(radiometry, offsets={})
        return radiometry
    if granule.baseline is None or has_offset(granule.baseline):
        raise InputError(
            f"item {granule.item_id} (baseline {granule.baseline or 'unknown'}) has no product "
            "metadata to read RADIO_ADD_OFFSET from; from baseline 04.00 on, DNs cannot be "
            "converted to reflectance without it"
        )
    log.info(
        "%s: no product metadata; baseline %s has no offset", granule.item_id, granule.baseline
    )
    return Radiometry(baseline=granule.baseline, quantification=10000.0, offsets={}, kind=kind)


def write_acquisition(
    config: AcquireConfig, plan: Plan, cache: GranuleCache, *, progress: bool, started: float
) -> AcquireResult:
    """Fetch the chosen dates and the DEM, then write the folder (every error before any file
    appears under its final name)."""
    from glaviz.runs.outputs import OutputFolder
    from glaviz.runs.records import run_record, write_record

    chosen = choose(plan.ranked, composite=config.composite, median_dates=config.median_dates)
    files = [fetch_granule(g, cache) for c in chosen for g in c.granules]
    dem, dem_paths = fetch_dem(plan.request.bbox, config.stac_url, cache)
    fetched_s = time.perf_counter() - started
    radiometry = "BOA" if config.level == "l2a" else "TOA"
    grid = plan.grid
    folder = OutputFolder(
        config.output, OUTPUT_NAMES, overwrite=config.overwrite, command="acquire"
    )
    with folder:
        # Temporary names in commit order: acquire.json is registered, and renamed, last.
        temps = {name: folder.temp(name) for name in OUTPUT_NAMES}
        tally, dem_coverage = _write_rasters(
            config, grid, chosen, files, dem_paths, temps, progress
        )
        record = {
            **run_record(config, command="acquire"),
            **provenance(
                grid=grid,
                radiometry=radiometry,
                composite=config.composite,
                ranked=plan.ranked,
                chosen=chosen,
                files=files,
                dem=dem,
                tally=tally,
                dem_coverage=dem_coverage,
            ),
            "fetched": list(cache.fetched),
        }
        outputs = {n: p for n, p in temps.items() if n != RECORD_NAME}
        write_record(temps[RECORD_NAME], record, atomic=False, outputs=outputs)
        committed = folder.commit()
    total = time.perf_counter() - started
    return AcquireResult(
        output=config.output,
        files=committed,
        grid=grid,
        dates=tuple(c.day for c in chosen),
        composite=config.composite,
        radiometry=radiometry,
        coverage=tally.coverage,
        cloud_fraction=tally.cloud_fraction,
        fetched=len(cache.fetched),
        timings={"search_fetch_s": fetched_s, "write_s": total - fetched_s, "total_s": total},
    )


def fetch_dem(
    bbox: tuple[float, float, float, float], stac_url: str | None, cache: GranuleCache
) -> tuple[list[DemTile], list[Path]]:
    """The DEM tiles of the AOI in mosaic order, and their local files."""
    from glaviz.acquire.search import search_dem

    dem = ordered(search_dem(bbox, stac_url=stac_url))
    return dem, [cache.raster(t.href, cache_key("dem", t.item_id), "elevation") for t in dem]


def _write_rasters(
    config: AcquireConfig,
    grid: Grid,
    chosen: Sequence[Candidate],
    files: Sequence[GranuleFiles],
    dem_paths: Sequence[Path],
    temps: dict[str, Path],
    progress: bool,
) -> tuple[Tally, float]:
    """optical, elevation, stack and quicklook under their temporary names; returns the
    optical tally and the DEM's coverage of the grid."""
    import rasterio

    from glaviz.features import compile_stack

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        tally, preview = _write_optical(config, grid, chosen, files, temps, progress)
        with ExitStack() as stack:
            reader = DemReader(stack, dem_paths, grid)
            write_elevation(grid, reader.read, target=temps["elevation.tif"], progress=progress)
            dem_coverage = reader.covered / (grid.width * grid.height)
    if dem_coverage < 1:
        log.warning(
            "the Copernicus DEM covers %.1f %% of the AOI; the rest is taken as sea level "
            "(0 m), as the DEM does for open ocean",
            100 * dem_coverage,
        )
    compile_stack(
        output=temps["stack.tif"],
        optical=temps["optical.tif"],
        elevation=temps["elevation.tif"],
        acquisition_date=composite_date([c.day for c in chosen]),
        overwrite=True,
        progress=progress,
    )
    preview.save(temps["quicklook.png"])
    return tally, dem_coverage


def _write_optical(
    config: AcquireConfig,
    grid: Grid,
    chosen: Sequence[Candidate],
    files: Sequence[GranuleFiles],
    temps: dict[str, Path],
    progress: bool,
) -> tuple[Tally, Preview]:
    """optical.tif and its preview: the best date's mosaic, or the median of the dates."""
    by_item = {f.granule.item_id: f for f in files}
    with ExitStack() as stack:
        dates = [
            [GranuleReader(stack, by_item[g.item_id], grid) for g in c.granules] for c in chosen
        ]

        def composite(window: Any) -> tuple[Any, Any]:
            return mosaic(dates[0], window) if config.composite == "best" else median(dates, window)

        return write_optical(
            grid,
            composite,
            optical=temps["optical.tif"],
            radiometry="BOA" if config.level == "l2a" else "TOA",
            acquisition_date=composite_date([c.day for c in chosen]),
            progress=progress,
        )
