"""Compile input rasters into one feature stack on the optical grid, streamed window by window.

The published ``compile_features.py`` read every raster whole as float64, aligned them with an
image resize, and never checked CRS or overlap. Here every input is checked up front (CRS, band
count, overlap), then the stack is written in fixed-size windows aligned to the output tiles:
each window reads the optical bands, warps the other rasters' matching source windows onto it
(bilinear, since every input is continuous), and writes all bands at once. Peak memory is set by
the window size and GDAL's block cache, not by the scene size.

The output is written inside a hidden scratch folder next to the target and renamed into place
at the end, so an interrupted or failed run never leaves a stack that looks complete.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from glaviz import __version__
from glaviz.errors import ConfigError, InputError
from glaviz.features.slope import BLOCK, write_slope
from glaviz.published.groups import GROUP_STACK_BANDS
from glaviz.published.normalisation import OpticalRange
from glaviz.published.stack_layout import ACQUISITION_DATE_TAG
from glaviz.runs.atomic import scratch_folder
from glaviz.runs.outputs import refuse_existing
from glaviz.util.progress import Progress
from glaviz.util.rasters import (
    bounds_overlap,
    count_windows,
    crs_name,
    format_bounds,
    open_raster,
    read_as_float,
    reproject_bounds,
    require_crs,
    require_north_up,
    same_grid,
    warped_view,
    windows,
)

log = logging.getLogger("glaviz.features")


@dataclass(frozen=True)
class InputSpec:
    """One input raster of the stack: which option it came from and what it must contain."""

    name: str  #: key in the stack's provenance tags and in messages
    option: str  #: the CLI option, for messages that say how to fix things
    bands: tuple[str, ...]  #: stack band descriptions it fills
    units: tuple[str, ...]
    meaning: str  #: what the bands are, for band-count messages


#: Inputs in stack order. ``elevation`` and ``slope`` together make the model's ``dem`` group.
INPUTS: dict[str, InputSpec] = {
    "optical": InputSpec(
        "optical",
        "--optical",
        GROUP_STACK_BANDS["optical"],
        ("reflectance",) * 6,
        "TOA reflectance: blue, green, red, NIR, SWIR1, SWIR2",
    ),
    "elevation": InputSpec(
        "elevation", "--elevation", GROUP_STACK_BANDS["dem"][:1], ("m",), "elevation in metres"
    ),
    "slope": InputSpec(
        "slope", "--slope", GROUP_STACK_BANDS["dem"][1:], ("degree",), "slope in degrees"
    ),
    "co_pol_sar": InputSpec(
        "co_pol_sar",
        "--co-pol-sar",
        GROUP_STACK_BANDS["co_pol_sar"],
        ("sigma0 (linear)",) * 2,
        "co-polarised sigma0, linear scale: ascending, descending",
    ),
    "cross_pol_sar": InputSpec(
        "cross_pol_sar",
        "--cross-pol-sar",
        GROUP_STACK_BANDS["cross_pol_sar"],
        ("sigma0 (linear)",) * 2,
        "cross-polarised sigma0, linear scale: ascending, descending",
    ),
    "in_sar": InputSpec(
        "in_sar",
        "--in-sar",
        GROUP_STACK_BANDS["in_sar"],
        ("coherence",) * 2,
        "InSAR coherence: ascending, descending",
    ),
    "thermal": InputSpec(
        "thermal", "--thermal", GROUP_STACK_BANDS["thermal"], ("K",), "brightness temperature in K"
    ),
}

#: GDAL block cache for the run. The default (5 % of RAM) would let the cache, not the scene,
#: set peak memory; 64 MB holds a window's worth of tiles.
GDAL_CACHE_MB = 64


@dataclass(frozen=True)
class StackResult:
    """What :func:`compile_stack` wrote."""

    path: Path
    width: int
    height: int
    crs: str
    bands: tuple[str, ...]
    groups: tuple[str, ...]
    slope_computed: bool
    seconds: float
    inputs: dict[str, str] = field(default_factory=dict)
    #: The imagery's date tagged on the stack (``YYYY-MM-DD``), if one was given or inherited.
    acquisition_date: str | None = None

    def summary(self) -> str:
        """The line ``glaviz features`` prints."""
        dated = f", imagery of {self.acquisition_date}" if self.acquisition_date else ""
        return (
            f"Wrote {self.path}: {self.width} × {self.height} px, {len(self.bands)} bands "
            f"({', '.join(self.groups)}), {self.crs}{dated}, {self.seconds:.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz features``, less the ``status`` the CLI adds."""
        return {
            "outputs": [str(self.path)],
            "counts": {"width": self.width, "height": self.height, "bands": len(self.bands)},
            "timings": {"total_s": self.seconds},
        }


#: Part of the optical scene an input must cover before a partial cover is only worth a warning.
_FULL_COVER = 0.999


@dataclass(frozen=True)
class _StackBands:
    """Which inputs fill a stack, in band order, and the band names and units they give."""

    inputs: tuple[str, ...]
    bands: tuple[str, ...]
    units: tuple[str, ...]
    slope_computed: bool  #: slope comes from the elevation rather than from an input

    @classmethod
    def of(cls, given: Collection[str], *, slope_computed: bool) -> _StackBands:
        """The layout of a stack of the ``given`` inputs (slope counts when it is computed)."""
        inputs = tuple(n for n in INPUTS if n in given or (n == "slope" and slope_computed))
        return cls(
            inputs=inputs,
            bands=tuple(b for n in inputs for b in INPUTS[n].bands),
            units=tuple(u for n in inputs for u in INPUTS[n].units),
            slope_computed=slope_computed,
        )


def _open_input(stack: ExitStack, path: Path, spec: InputSpec) -> DatasetReader:
    """Open one input and refuse it when it cannot be stacked (bands, CRS, rotation)."""
    src = stack.enter_context(
        open_raster(path, f"{spec.name} raster", missing=f"check the {spec.option} path")
    )
    if src.count != len(spec.bands):
        raise InputError(
            f"{path} has {src.count} band(s); {spec.option} expects {len(spec.bands)} "
            f"({spec.meaning})"
        )
    require_crs(src, path, f"{spec.name} raster")
    require_north_up(src, path, f"{spec.name} raster")
    return src


def _open_inputs(stack: ExitStack, paths: dict[str, Path]) -> dict[str, DatasetReader]:
    """Open and check every input, then check that each overlaps the optical scene.

    All inputs are checked before any is compared, so that a wrong band count or a missing CRS
    is reported as such rather than as a failed overlap.
    """
    sources = {name: _open_input(stack, path, INPUTS[name]) for name, path in paths.items()}
    opt = sources["optical"]
    for name, src in sources.items():
        if name != "optical":
            _check_overlap(opt, paths["optical"], src, paths[name])
    return sources


def _check_overlap(opt: DatasetReader, opt_path: Path, src: DatasetReader, path: Path) -> None:
    """Refuse an input that misses the optical scene; warn when it covers only part of it.

    No overlap is what a wrongly labelled CRS looks like, so the message shows both bounds in
    one CRS. A partial cover is legitimate (a DEM tile at the scene's edge): the rest is NaN.
    """
    if not bounds_overlap(src.bounds, src.crs, opt.bounds, opt.crs):
        raise _no_overlap(opt, opt_path, src, path)
    in_optical = reproject_bounds(src.bounds, src.crs, opt.crs)
    if in_optical is None:
        return
    covered = _covered_fraction(tuple(opt.bounds), in_optical)
    if covered < _FULL_COVER:
        log.warning(
            "%s covers only about %.0f %% of the optical scene; the rest is NaN in the stack",
            path,
            100 * covered,
        )


def _no_overlap(opt: DatasetReader, opt_path: Path, src: DatasetReader, path: Path) -> InputError:
    """The error for an input that misses the optical scene, with both bounds in one CRS.

    That CRS is the optical one, unless the input's bounds cannot be expressed there; then the
    input's own.
    """
    opt_bounds: tuple[float, ...] = tuple(opt.bounds)
    src_bounds: tuple[float, ...] = tuple(src.bounds)
    crs = src.crs
    in_optical = reproject_bounds(src.bounds, src.crs, opt.crs)
    if in_optical is not None:
        src_bounds, crs = in_optical, opt.crs
    else:
        opt_bounds = reproject_bounds(opt.bounds, opt.crs, src.crs) or opt_bounds
    return InputError(
        f"{opt_path} and {path} do not overlap (optical bounds {format_bounds(opt_bounds)}, "
        f"{path.name} bounds {format_bounds(src_bounds)} in {crs_name(crs)}); "
        f"check the CRS of {path}"
    )


def _covered_fraction(scene: tuple[float, ...], other: tuple[float, ...]) -> float:
    """Fraction of the ``scene`` bounds that the ``other`` bounds (same CRS) cover."""
    ix = max(0.0, min(scene[2], other[2]) - max(scene[0], other[0]))
    iy = max(0.0, min(scene[3], other[3]) - max(scene[1], other[1]))
    return ix * iy / ((scene[2] - scene[0]) * (scene[3] - scene[1]))


def warp_window(vrt: WarpedVRT, window: Window) -> np.ndarray:
    """Read ``window`` of a :func:`~glaviz.util.rasters.warped_view` as float32, NaN where there
    is no data. Its own function, so that a failing warp can be simulated in tests."""
    return read_as_float(vrt, list(range(1, vrt.count + 1)), window)


def _dem_crop(dem: DatasetReader, opt: DatasetReader) -> Window:
    """The part of the DEM under the optical scene, plus a margin for the warp kernel.

    Slope is computed only there (a regional DEM can be far larger than the scene). The margin
    is two pixels plus twice the number of DEM pixels per optical pixel, because GDAL widens
    the bilinear kernel when it downsamples.
    """
    full = Window(0, 0, dem.width, dem.height)
    if same_grid(dem, opt):
        return full
    under = reproject_bounds(opt.bounds, opt.crs, dem.crs)
    if under is None:
        return full
    raw = dem.window(*under)
    ratio = max(raw.width / opt.width, raw.height / opt.height, 1.0)
    margin = 2 + math.ceil(2 * ratio)
    c0 = max(math.floor(raw.col_off) - margin, 0)
    r0 = max(math.floor(raw.row_off) - margin, 0)
    c1 = min(math.ceil(raw.col_off + raw.width) + margin, dem.width)
    r1 = min(math.ceil(raw.row_off + raw.height) + margin, dem.height)
    if c1 <= c0 or r1 <= r0:  # the overlap check makes this unreachable for valid inputs
        return full
    return Window(c0, r0, c1 - c0, r1 - r0)


def resolve_output(output: Path, inputs: dict[str, Path], overwrite: bool) -> Path:
    """Check the stack path ``output`` before any work: a .tif, not a folder, not an input."""
    output = Path(output)
    if output.suffix.lower() not in {".tif", ".tiff"}:
        raise ConfigError(f"output {output} is not a .tif file; name the stack e.g. stack.tif")
    if output.is_dir():
        raise ConfigError(
            f"output {output} is a folder; give a file name such as {output / 'stack.tif'}"
        )
    for name, path in inputs.items():
        if path.exists() and output.exists() and output.resolve() == path.resolve():
            raise ConfigError(f"output {output} is the {name} input; choose another -o path")
    refuse_existing(output, overwrite=overwrite)
    return output


def stack_profile(*, count: int, width: int, height: int, crs: Any, transform: Any) -> dict:
    """The rasterio profile of every stack glaviz writes: tiled, compressed float32, NaN nodata."""
    return {
        "driver": "GTiff",
        "dtype": "float32",
        "count": count,
        "width": width,
        "height": height,
        "crs": crs,
        "transform": transform,
        "nodata": float("nan"),
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "predictor": 3,
        "interleave": "pixel",
        "bigtiff": "if_safer",
        "num_threads": "all_cpus",
    }


def create_stack(
    path: Path,
    *,
    bands: tuple[str, ...],
    units: tuple[str, ...],
    width: int,
    height: int,
    crs: Any,
    transform: Any,
) -> DatasetWriter:
    """Open a new stack GeoTIFF for writing (:func:`stack_profile`), its bands already named.

    Every stack, compiled or converted, is made here and tagged by :func:`tag_stack`, so that
    deploy can read any of them by band description.
    """
    profile = stack_profile(
        count=len(bands), width=width, height=height, crs=crs, transform=transform
    )
    dst = rasterio.open(path, "w", **profile)
    dst.descriptions = bands
    dst.units = units
    return dst


def tag_stack(
    dst: DatasetWriter,
    *,
    inputs: dict[str, str],
    bands: tuple[str, ...],
    units: tuple[str, ...],
    note: str,
    acquisition_date: date | None = None,
) -> None:
    """Record what made a stack: glaviz's version, its inputs, each band's unit, ``note``, and
    the date of its imagery when known (deploy records it; inventory and change read it)."""
    dst.update_tags(
        GLAVIZ_VERSION=__version__,
        GLAVIZ_INPUTS=json.dumps(inputs),
        GLAVIZ_UNITS=json.dumps(dict(zip(bands, units, strict=True))),
        GLAVIZ_NOTE=note,
    )
    if acquisition_date is not None:
        dst.update_tags(**{ACQUISITION_DATE_TAG: acquisition_date.isoformat()})
    for idx, unit in enumerate(units, start=1):
        dst.update_tags(idx, units=unit)


def tagged_date(ds: DatasetReader) -> date | None:
    """The ``ACQUISITION_DATE`` tag of a raster (``glaviz acquire`` writes it on its outputs), or
    None when it has none; a tag that is not a date is ignored with a warning."""
    text = ds.tags().get(ACQUISITION_DATE_TAG)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        log.warning(
            "%s: ignoring tag %s=%r, not a YYYY-MM-DD date", ds.name, ACQUISITION_DATE_TAG, text
        )
        return None


def _check_window_size(window_size: int) -> None:
    """Windows must cover whole output tiles, so each tile is written exactly once."""
    if window_size <= 0 or window_size % BLOCK:
        raise ConfigError(f"window_size must be a positive multiple of {BLOCK}, got {window_size}")


def _dem_with_slope(
    stack: ExitStack,
    elevation: DatasetReader,
    *,
    crop: Window,
    path: Path,
    window_size: int,
    bar: Progress,
) -> DatasetReader:
    """Elevation and its Horn slope on the DEM's own grid, cropped to the scene, as one file.

    Slope is computed before any warp (warping first would smooth the gradients); keeping the
    elevation beside it lets one warp serve both bands.
    """
    written = write_slope(
        elevation,
        path=path,
        window=crop,
        window_size=window_size,
        with_elevation=True,
        on_window=bar.advance,
    )
    return stack.enter_context(rasterio.open(written))


def _band_readers(
    stack: ExitStack,
    sources: dict[str, DatasetReader],
    layout: _StackBands,
    *,
    like: DatasetReader,
    dem: DatasetReader | None,
) -> list[DatasetReader | WarpedVRT]:
    """What fills the stack's bands, in order: each input read as it is when it lies on the
    grid of ``like``, else through a bilinear warped view.

    With ``dem`` (elevation and computed slope together), that one file gives both the
    ``elevation`` and the ``slope`` bands.
    """
    readers: list[DatasetReader | WarpedVRT] = []
    for name in layout.inputs:
        if dem is not None and name == "slope":
            continue
        src = dem if dem is not None and name == "elevation" else sources[name]
        readers.append(
            src if same_grid(src, like) else stack.enter_context(warped_view(src, like=like))
        )
    assert sum(src.count for src in readers) == len(layout.bands)
    return readers


def _read_window(
    readers: list[DatasetReader | WarpedVRT], window: Window, count: int
) -> np.ndarray:
    """All ``count`` stack bands of one window, float32 with NaN where there is no data."""
    chunk = np.empty((count, int(window.height), int(window.width)), np.float32)
    i = 0
    for src in readers:
        k = src.count
        if isinstance(src, WarpedVRT):
            chunk[i : i + k] = warp_window(src, window)
        else:
            chunk[i : i + k] = read_as_float(src, list(range(1, k + 1)), window)
        i += k
    return chunk


def _provenance(paths: dict[str, Path]) -> dict[str, str]:
    """The stack's ``GLAVIZ_INPUTS`` tag: each input's absolute path, or how slope was made."""
    provenance = {name: str(path.resolve()) for name, path in paths.items()}
    if "slope" not in paths:
        provenance["slope"] = f"computed from {paths['elevation'].name} (Horn's method, degrees)"
    return provenance


def _write_stack(
    path: Path,
    readers: list[DatasetReader | WarpedVRT],
    layout: _StackBands,
    *,
    like: DatasetReader,
    window_size: int,
    provenance: dict[str, str],
    acquisition_date: date | None,
    on_window: Callable[[Window], Any] | None,
    bar: Progress,
) -> OpticalRange:
    """Write the stack on the grid of ``like`` window by window, then tag it.

    Returns the range of the optical values written, for the check that the optical input is
    reflectance rather than digital numbers (:class:`OpticalRange`, shared with deploy).
    """
    optical = OpticalRange()
    with create_stack(
        path,
        bands=layout.bands,
        units=layout.units,
        width=like.width,
        height=like.height,
        crs=like.crs,
        transform=like.transform,
    ) as dst:
        for win in windows(Window(0, 0, like.width, like.height), window_size):
            chunk = _read_window(readers, win, len(layout.bands))
            optical.update(chunk[:6])
            dst.write(chunk, window=win)
            if on_window is not None:
                on_window(win)
            bar.advance()
        tag_stack(
            dst,
            inputs=provenance,
            bands=layout.bands,
            units=layout.units,
            note="physical units; glaviz normalises with the model's statistics",
            acquisition_date=acquisition_date,
        )
    return optical


def _fill_stack(
    stack: ExitStack,
    sources: dict[str, DatasetReader],
    layout: _StackBands,
    part: Path,
    *,
    window_size: int,
    provenance: dict[str, str],
    acquisition_date: date | None,
    progress: bool,
    on_window: Callable[[Window], Any] | None,
) -> OpticalRange:
    """Compute slope when it is not given, line up the band readers and write the stack at
    ``part`` on the optical grid, under one progress bar for both phases.

    Scratch files (the slope) go next to ``part``. Returns the range of the optical values.
    """
    opt = sources["optical"]
    crop = _dem_crop(sources["elevation"], opt) if layout.slope_computed else None
    total = count_windows(Window(0, 0, opt.width, opt.height), window_size)
    if crop is not None:
        total += count_windows(crop, window_size)
    with Progress(progress, total=total, description="features") as bar:
        dem = None
        if crop is not None:
            bar.describe("slope")
            dem = _dem_with_slope(
                stack,
                sources["elevation"],
                crop=crop,
                path=part.parent / "dem.tif",
                window_size=window_size,
                bar=bar,
            )
        readers = _band_readers(stack, sources, layout, like=opt, dem=dem)
        bar.describe("stack")
        return _write_stack(
            part,
            readers,
            layout,
            like=opt,
            window_size=window_size,
            provenance=provenance,
            acquisition_date=acquisition_date,
            on_window=on_window,
            bar=bar,
        )


def compile_stack(
    *,
    output: str | Path,
    optical: str | Path,
    elevation: str | Path,
    slope: str | Path | None = None,
    co_pol_sar: str | Path | None = None,
    cross_pol_sar: str | Path | None = None,
    in_sar: str | Path | None = None,
    thermal: str | Path | None = None,
    acquisition_date: date | None = None,
    overwrite: bool = False,
    progress: bool = False,
    window_size: int = 1024,
    on_window: Callable[[Window], Any] | None = None,
) -> StackResult:
    """Write the feature stack GeoTIFF ``output`` on the grid of ``optical``.

    Bands, in order: ``optical:1…6``, ``elevation``, ``slope``, then whichever of
    ``co_pol_sar:1,2``, ``cross_pol_sar:1,2``, ``in_sar:1,2``, ``thermal`` were given. Values stay
    in physical units (the model's normalisation is applied by
    :mod:`glaviz.published.normalisation`), float32, NaN where invalid. Slope is computed from
    ``elevation`` (Horn, degrees) when not given.

    ``acquisition_date`` is the date of the imagery, tagged on the stack so that deploy, inventory
    and change know it; without it, the optical input's own tag is carried over, if it has one.

    ``window_size`` (a multiple of 256) sets the processing window and so the memory in use.
    ``on_window`` is called after each stack window is written (progress hooks, tests).

    Raises :class:`InputError` for unusable inputs, :class:`OutputExistsError` when ``output``
    exists and ``overwrite`` is false, :class:`ConfigError` for a bad output path. Nothing is
    left at ``output`` unless the whole stack was written.
    """
    started = time.perf_counter()
    _check_window_size(window_size)
    given = {
        "optical": optical,
        "elevation": elevation,
        "slope": slope,
        "co_pol_sar": co_pol_sar,
        "cross_pol_sar": cross_pol_sar,
        "in_sar": in_sar,
        "thermal": thermal,
    }
    paths = {k: Path(v) for k, v in given.items() if v is not None}
    output = resolve_output(Path(output), paths, overwrite)
    layout = _StackBands.of(paths, slope_computed=slope is None)

    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        sources = _open_inputs(stack, paths)
        opt = sources["optical"]
        day = acquisition_date or tagged_date(opt)
        # Beside the output, so the final rename is atomic; removed whatever happens.
        part = stack.enter_context(scratch_folder(output)) / output.name
        optical = _fill_stack(
            stack,
            sources,
            layout,
            part,
            window_size=window_size,
            provenance=_provenance(paths),
            acquisition_date=day,
            progress=progress,
            on_window=on_window,
        )
        # A warning, not a refusal: the stack is the user's to inspect; deploy refuses it.
        if (problem := optical.problem()) is not None:
            log.warning("%s", problem)
        os.replace(part, output)
        return StackResult(
            path=output,
            width=opt.width,
            height=opt.height,
            crs=crs_name(opt.crs),
            bands=layout.bands,
            groups=tuple(
                g for g, names in GROUP_STACK_BANDS.items() if set(names) <= set(layout.bands)
            ),
            slope_computed=layout.slope_computed,
            seconds=time.perf_counter() - started,
            inputs={n: str(p) for n, p in paths.items()},
            acquisition_date=day.isoformat() if day else None,
        )
