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
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from glaviz import __version__
from glaviz.errors import ConfigError, InputError
from glaviz.features.slope import BLOCK, count_windows, read_as_float, write_slope
from glaviz.published.groups import GROUP_STACK_BANDS
from glaviz.runs.outputs import refuse_existing
from glaviz.util.progress import Progress

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
#: Warp "tolerance" that makes GDAL's approximate transformer exact (rasterio's WarpedVRT
#: fails with 0).
_EXACT = 1e-9


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


def _fmt_bounds(b: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


def _crs_name(crs: Any) -> str:
    epsg = crs.to_epsg() if crs is not None else None
    return f"EPSG:{epsg}" if epsg else str(crs)


def _open(stack: ExitStack, path: Path, spec: InputSpec) -> DatasetReader:
    if not path.exists():
        raise InputError(f"{spec.name} raster {path} does not exist; check the {spec.option} path")
    try:
        return stack.enter_context(rasterio.open(path))
    except RasterioIOError as exc:
        raise InputError(f"cannot read {spec.name} raster {path}: {exc}") from None


def _check_input(src: DatasetReader, path: Path, spec: InputSpec, *, expected_count: int) -> None:
    if src.count != expected_count:
        raise InputError(
            f"{path} has {src.count} band(s); {spec.option} expects {expected_count} "
            f"({spec.meaning})"
        )
    if src.crs is None:
        raise InputError(
            f"{path} has no CRS (expected a georeferenced raster); assign one, e.g. "
            f"gdal_edit.py -a_srs EPSG:<code> {path}"
        )
    if not src.transform.is_rectilinear:
        raise InputError(
            f"{path} has a rotated geotransform; warp it to a north-up grid first (gdalwarp)"
        )


def _bounds_in(src: DatasetReader, crs: Any) -> tuple[float, float, float, float] | None:
    try:
        return transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)
    except (RasterioError, ValueError):
        return None


def _check_overlap(opt: DatasetReader, opt_path: Path, src: DatasetReader, path: Path) -> None:
    ob = opt.bounds
    sb = _bounds_in(src, opt.crs)
    # Compare in the input's CRS when its bounds cannot be expressed in the optical CRS.
    if sb is None:
        ob_in = _bounds_in(opt, src.crs)
        overlap = ob_in is not None and _intersects(ob_in, tuple(src.bounds))
        shown_opt, shown_src, crs = ob_in or tuple(ob), tuple(src.bounds), src.crs
    else:
        overlap = _intersects(tuple(ob), sb)
        shown_opt, shown_src, crs = tuple(ob), sb, opt.crs
    if not overlap:
        raise InputError(
            f"{opt_path} and {path} do not overlap (optical bounds {_fmt_bounds(shown_opt)}, "
            f"{path.name} bounds {_fmt_bounds(shown_src)} in {_crs_name(crs)}); "
            f"check the CRS of {path}"
        )
    if sb is not None:
        ix = max(0.0, min(ob[2], sb[2]) - max(ob[0], sb[0]))
        iy = max(0.0, min(ob[3], sb[3]) - max(ob[1], sb[1]))
        covered = ix * iy / ((ob[2] - ob[0]) * (ob[3] - ob[1]))
        if covered < 0.999:
            log.warning(
                "%s covers only about %.0f %% of the optical scene; the rest is NaN in the stack",
                path,
                100 * covered,
            )


def _intersects(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _same_grid(a: DatasetReader, b: DatasetReader) -> bool:
    return (
        a.crs == b.crs
        and a.width == b.width
        and a.height == b.height
        and a.transform.almost_equals(b.transform, precision=1e-9 * max(abs(a.transform.a), 1e-9))
    )


def warped_view(src: DatasetReader, *, like: DatasetReader) -> WarpedVRT:
    """A virtual, bilinear warp of ``src`` onto the grid of ``like``, read window by window.

    GDAL warps only the blocks a read touches, honouring the source's nodata value, mask or
    alpha band, and fills what ``src`` does not cover with NaN. Coordinate transforms are exact
    (GDAL's default approximation, 1/8 source pixel along each scanline, makes values depend
    on where the windows are cut; exact transforms make the stack independent of them).
    """
    return WarpedVRT(
        src,
        crs=like.crs,
        transform=like.transform,
        width=like.width,
        height=like.height,
        resampling=Resampling.bilinear,
        tolerance=_EXACT,
        nodata=np.nan,
        dtype="float32",
    )


def warp_window(vrt: WarpedVRT, window: Window) -> np.ndarray:
    """Read ``window`` of a :func:`warped_view` as float32, NaN where there is no data."""
    return read_as_float(vrt, list(range(1, vrt.count + 1)), window)


def _stack_windows(width: int, height: int, size: int) -> Iterator[Window]:
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Window(col, row, min(size, width - col), min(size, height - row))


def _dem_crop(dem: DatasetReader, opt: DatasetReader) -> Window:
    """The part of the DEM under the optical scene, plus a margin for the warp kernel.

    Slope is computed only there (a regional DEM can be far larger than the scene). The margin
    is two pixels plus twice the number of DEM pixels per optical pixel, because GDAL widens
    the bilinear kernel when it downsamples.
    """
    full = Window(0, 0, dem.width, dem.height)
    if _same_grid(dem, opt):
        return full
    try:
        left, bottom, right, top = transform_bounds(opt.crs, dem.crs, *opt.bounds, densify_pts=21)
    except (RasterioError, ValueError):
        return full
    raw = dem.window(left, bottom, right, top)
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

    ``window_size`` (a multiple of 256) sets the processing window and so the memory in use.
    ``on_window`` is called after each stack window is written (progress hooks, tests).

    Raises :class:`InputError` for unusable inputs, :class:`OutputExistsError` when ``output``
    exists and ``overwrite`` is false, :class:`ConfigError` for a bad output path. Nothing is
    left at ``output`` unless the whole stack was written.
    """
    started = time.perf_counter()
    if window_size <= 0 or window_size % BLOCK:
        raise ConfigError(f"window_size must be a positive multiple of {BLOCK}, got {window_size}")
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
    output.parent.mkdir(parents=True, exist_ok=True)

    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        sources: dict[str, DatasetReader] = {}
        for name, path in paths.items():
            spec = INPUTS[name]
            src = _open(stack, path, spec)
            _check_input(src, path, spec, expected_count=len(spec.bands))
            sources[name] = src
        opt = sources["optical"]
        for name, src in sources.items():
            if name != "optical":
                _check_overlap(opt, paths["optical"], src, paths[name])

        scratch = Path(
            tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
        )
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)

        order = [n for n in INPUTS if n in sources or (n == "slope" and slope is None)]
        bands = tuple(b for n in order for b in INPUTS[n].bands)
        units = tuple(u for n in order for u in INPUTS[n].units)
        n_windows = math.ceil(opt.height / window_size) * math.ceil(opt.width / window_size)

        dem_crop = _dem_crop(sources["elevation"], opt) if slope is None else None
        total = n_windows + (count_windows(dem_crop, window_size) if dem_crop else 0)
        with Progress(progress, total=total, description="features") as bar:
            # What fills the stack's bands, in order: (input, dataset or warped view).
            readers: list[tuple[str, Any]] = []
            if dem_crop is not None:
                bar.describe("slope")
                # Elevation and slope together on the DEM grid: one warp for both.
                dem_path = write_slope(
                    sources["elevation"],
                    path=scratch / "dem.tif",
                    window=dem_crop,
                    window_size=window_size,
                    with_elevation=True,
                    on_window=bar.advance,
                )
                sources["dem"] = stack.enter_context(rasterio.open(dem_path))
            for name in order:
                if name == "slope" and "dem" in sources:
                    continue
                key = "dem" if name == "elevation" and "dem" in sources else name
                src = sources[key]
                if not _same_grid(src, opt):
                    src = stack.enter_context(warped_view(src, like=opt))
                readers.append((key, src))

            assert sum(src.count for _, src in readers) == len(bands)
            bar.describe("stack")
            profile = stack_profile(
                count=len(bands),
                width=opt.width,
                height=opt.height,
                crs=opt.crs,
                transform=opt.transform,
            )
            part = scratch / output.name
            optical_max = -np.inf
            with rasterio.open(part, "w", **profile) as dst:
                dst.descriptions = bands
                dst.units = units
                for win in _stack_windows(opt.width, opt.height, window_size):
                    chunk = np.empty((len(bands), int(win.height), int(win.width)), np.float32)
                    i = 0
                    for _, src in readers:
                        k = src.count
                        if isinstance(src, WarpedVRT):
                            chunk[i : i + k] = warp_window(src, win)
                        else:
                            chunk[i : i + k] = read_as_float(src, list(range(1, k + 1)), win)
                        i += k
                    with np.errstate(invalid="ignore"):
                        if np.isfinite(chunk[:6]).any():
                            optical_max = max(optical_max, float(np.nanmax(chunk[:6])))
                    dst.write(chunk, window=win)
                    if on_window is not None:
                        on_window(win)
                    bar.advance()
                provenance = {n: str(paths[n].resolve()) for n in paths}
                if "slope" not in paths:
                    provenance["slope"] = (
                        f"computed from {paths['elevation'].name} (Horn's method, degrees)"
                    )
                dst.update_tags(
                    GLAVIZ_VERSION=__version__,
                    GLAVIZ_INPUTS=json.dumps(provenance),
                    GLAVIZ_UNITS=json.dumps(dict(zip(bands, units, strict=True))),
                    GLAVIZ_NOTE="physical units; glaviz normalises with the model's statistics",
                )
                for idx, unit in enumerate(units, start=1):
                    dst.update_tags(idx, units=unit)
        if optical_max > 100:
            log.warning(
                "optical values reach %.6g; the model expects TOA reflectance (about 0-1). "
                "Scale digital numbers first (e.g. Sentinel-2 L1C: divide by 10000)",
                optical_max,
            )
        os.replace(part, output)
        return StackResult(
            path=output,
            width=opt.width,
            height=opt.height,
            crs=_crs_name(opt.crs),
            bands=bands,
            groups=tuple(g for g, names in GROUP_STACK_BANDS.items() if set(names) <= set(bands)),
            slope_computed=slope is None,
            seconds=time.perf_counter() - started,
            inputs={n: str(p) for n, p in paths.items()},
        )
