"""The streaming tiled inference engine behind ``glaviz deploy``.

One reader thread walks the window rows of the published grid: it reads the scene strip under a
window row from the stack (all bands of the needed groups in one read), normalises it, zero-pads it
as the published pipeline did, and queues the row's windows. The main thread pushes fixed-shape
batches through the compiled model, blends each window row into a rolling buffer, and writes every
scene row as soon as no later window touches it. Peak memory is therefore bounded by the scene
width times about two window heights, whatever the scene height.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glaviz import __version__
from glaviz.config.deploy import DeployConfig
from glaviz.engine.core import RowItem, best_batch_size, run_window_rows
from glaviz.errors import ConfigError, GlavizError, InputError

log = logging.getLogger(__name__)

#: Smallest GDAL block cache for deploy, in MB.
GDAL_CACHE_MB = 128


def gdal_cache_mb(width: int, bands: int) -> int:
    """GDAL block cache for a scene ``width`` wide: two rows of 256² blocks of every band read
    (float32) plus the outputs (up to 4 float32 bands), at least :data:`GDAL_CACHE_MB`."""
    per_block_row = width * 256 * 4 * (bands + 4)
    return max(GDAL_CACHE_MB, math.ceil(2 * per_block_row / 2**20))


@dataclass
class DeployResult:
    """What a deploy run produced and how long its parts took."""

    outdir: Path
    outputs: list[Path]
    windows: int
    polygons: int | None
    glacier_fraction: float
    timings: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)


def load_region_vector(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Read a region vector: ``{"region_vector": [...], "regions": [...]}`` or a plain list."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read region vector {path}: {exc}") from None
    values = raw.get("region_vector") if isinstance(raw, dict) else raw
    regions = raw.get("regions") if isinstance(raw, dict) else None
    try:
        vector = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        vector = np.zeros(0, np.float32)
    if vector.ndim != 1 or vector.size == 0 or not np.all(np.isfinite(vector)):
        raise InputError(
            f"{path} holds no region vector; expected a JSON list of numbers or "
            '{"region_vector": [...]} as written by glaviz optimise-bias'
        )
    return vector, regions


def _coordinate_encoder(dataset: Any) -> Callable[[float, float], np.ndarray]:
    """sin/cos of latitude and longitude, in radians, at a scene (row, col) pixel centre."""
    from rasterio.transform import xy
    from rasterio.warp import transform as warp

    if dataset.crs is None:
        raise InputError(
            f"{dataset.name} has no CRS, so coordinate encoding cannot find latitudes; "
            "assign the CRS (e.g. gdal_edit.py -a_srs EPSG:32632) or use --region-vector"
        )
    affine = dataset.transform

    def encode(row: float, col: float) -> np.ndarray:
        x, y = xy(affine, row, col, offset="center")
        lon, lat = warp(dataset.crs, "EPSG:4326", [x], [y])
        lat_r, lon_r = math.radians(lat[0]), math.radians(lon[0])
        return np.array(
            [math.sin(lat_r), math.cos(lat_r), math.sin(lon_r), math.cos(lon_r)], np.float32
        )

    return encode


def _read_rows(
    dataset: Any,
    layout: Any,
    model: Any,
    grid: Any,
    location: Callable[[int, int], np.ndarray] | None,
) -> Iterator[RowItem]:
    """Yield every window row of ``grid``, normalised and zero-padded like the published scene.

    Consecutive window rows overlap by half a window, so the normalised scene rows of the previous
    strip are kept and only the rows not seen yet are read, decoded and normalised: every scene
    row is read from disk once.
    """
    from rasterio.windows import Window

    from glaviz.engine.tiling import read_window_from_padded
    from glaviz.pipeline import normalise_group, valid_mask

    groups = list(model.groups)
    read_groups = groups if "optical" in groups else ["optical", *groups]
    held_start, held_stop = 0, 0  # scene rows currently held, normalised, in ``held``
    held: dict[str, np.ndarray] = {}
    for k, row_origin in enumerate(grid.row_origins):
        plan = read_window_from_padded(grid, row_origin, 0, width=grid.padded_width)
        rows, cols = plan.scene_rows, plan.scene_cols
        first_new = max(rows.start, held_stop)
        window = Window(cols.start, first_new, cols.stop - cols.start, rows.stop - first_new)
        raw = layout.read_groups(dataset, read_groups, window=window)
        # Published: only invalid optical pixels are marked (and zeroed). A NaN in another group
        # (a DEM hole, a SAR gap) would turn whole windows into NaN through the fusion block's
        # global pooling, so those pixels are marked invalid too and zeroed after normalising.
        valid = np.logical_and.reduce([valid_mask(raw[g]) for g in read_groups])
        inputs: dict[str, list[np.ndarray]] = {}
        for group in groups:
            fresh = normalise_group(group, raw[group], model.stats)
            np.nan_to_num(fresh, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            kept = held[group][rows.start - held_start :] if group in held else fresh[:0]
            data = np.concatenate([kept, fresh]) if len(kept) else fresh
            held[group] = data
            strip = np.zeros((grid.patch, grid.padded_width, data.shape[-1]), np.float32)
            strip[plan.window_rows, plan.window_cols] = data
            inputs[group] = [strip[:, c : c + grid.patch] for c in grid.col_origins]
        held_start, held_stop = rows.start, rows.stop
        if location is not None:
            inputs["location"] = [location(row_origin, c) for c in grid.col_origins]
        yield RowItem(k, inputs, extra=valid)


class _ValidRows:
    """Validity of scene rows (in order, as read), kept only until their outlines are written."""

    def __init__(self) -> None:
        self._rows: list[np.ndarray] = []

    def add(self, rows: np.ndarray) -> None:
        if len(rows):
            self._rows.append(rows)

    def take(self, n: int) -> np.ndarray:
        data = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
        taken, rest = data[:n], data[n:]
        self._rows = [rest] if len(rest) else []
        return taken


def deploy(config: DeployConfig, *, progress: bool = False) -> DeployResult:
    """Map glaciers on a whole feature stack and write the outputs into ``config.outdir``.

    ``config.calibration``: a CAL.json path or a packaged calibration name; ``None`` uses the
    model's own (a bundle's, or the one the registry attaches to a published model); ``"none"``
    disables it.
    """
    import rasterio

    from glaviz.engine.outputs import OutputSet

    t_start = time.perf_counter()
    stack = config.stack
    outputs = OutputSet(config.outdir, overwrite=config.overwrite)
    try:
        dataset = rasterio.open(stack)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open stack {stack}: {exc}") from None
    try:
        # GDAL's block cache defaults to 5 % of RAM and keeps every block read or written, so it
        # would grow with the scene area; the engine reads each strip once and writes rows in
        # order, so a small cache loses nothing and keeps memory bounded by the scene width.
        cache_mb = gdal_cache_mb(dataset.width, dataset.count)
        with rasterio.Env(GDAL_CACHEMAX=cache_mb), dataset:
            return _deploy(
                dataset=dataset,
                stack=Path(stack),
                outputs=outputs,
                opts=config,
                progress=progress,
                t_start=t_start,
            )
    except BaseException:
        outputs.cleanup()
        raise


def _resolve_calibration(name: str | None, model: Any) -> tuple[Any, str | None]:
    from glaviz.calibration import CalibrationModel

    if name is not None and name.strip().lower() == "none":
        return None, None
    if name is None:
        if model.calibration is not None:
            return CalibrationModel.from_dict(model.calibration, source=str(model.path)), "bundle"
        if model.calibration_name is None:
            return None, None
        name = model.calibration_name
    from glaviz.registry.registry import calibration_path

    path = calibration_path(name)
    return CalibrationModel.load(path), str(path)


def _deploy(
    *,
    dataset: Any,
    stack: Path,
    outputs: Any,
    opts: DeployConfig,
    progress: bool,
    t_start: float,
) -> DeployResult:
    import rasterio

    from glaviz.engine import postprocess
    from glaviz.engine.loading import load_for_inference
    from glaviz.engine.outputs import (
        OUTLINE_COLORS,
        OUTLINE_NODATA,
        geotiff_profile,
        vectorise_outlines,
        write_run_json,
    )
    from glaviz.engine.predictor import Predictor, default_batch_size
    from glaviz.engine.tiling import tile_grid
    from glaviz.pipeline import StackLayout
    from glaviz.records import run_record

    timings: dict[str, float] = {}
    layout = StackLayout.read(dataset)
    location_mode = (
        "region" if opts.region_vector else "coordinate" if opts.coordinate_encoding else "none"
    )
    rv, rv_regions = load_region_vector(opts.region_vector) if opts.region_vector else (None, None)
    t0 = time.perf_counter()
    model = load_for_inference(
        opts.weights,
        features=opts.features,
        location=location_mode,
        mc_dropout=opts.mc > 0,
        precision=opts.precision,
    )
    timings["load_model_s"] = time.perf_counter() - t0
    config = model.config
    layout.require(model.groups)
    if rv is not None and rv.size != config.location_size:
        regions = ", ".join(model.region_names or []) or "regions"
        raise ConfigError(
            f"region vector {opts.region_vector} has {rv.size} values, but the model's location "
            f"input has {config.location_size} ({regions}); "
            "make one for this model with glaviz optimise-bias"
        )
    cal, cal_source = _resolve_calibration(opts.calibration, model)
    if dataset.count == 0 or dataset.height == 0 or dataset.width == 0:
        raise InputError(f"{stack} is empty")
    grid = tile_grid(dataset.height, dataset.width, config.patch_size)
    location: Callable[[int, int], np.ndarray] | None = None
    if rv is not None:
        fixed = rv.astype(np.float32)

        def location(_r: int, _c: int) -> np.ndarray:
            return fixed

    elif opts.coordinate_encoding:
        encode = _coordinate_encoder(dataset)

        def location(r: int, c: int) -> np.ndarray:
            return encode(*grid.window_centre(r, c))

    p = config.patch_size
    shapes: dict[str, tuple[int, ...]] = {g: (p, p, n) for g, n in config.feature_groups.items()}
    if config.uses_location:
        shapes["location"] = (config.location_size,)
    largest = opts.batch_size if opts.batch_size is not None else default_batch_size(tta=opts.tta)
    batch = best_batch_size(grid.n_windows, largest)
    predictor = Predictor(
        model.model, input_shapes=shapes, batch_size=batch, tta=opts.tta, mc=opts.mc
    )

    base = {"width": dataset.width, "height": dataset.height}
    base.update(crs=dataset.crs, transform=dataset.transform)
    paths = {
        "outlines.tif": outputs.temp("outlines.tif"),
        "confidence.tif": outputs.temp("confidence.tif"),
    }
    if opts.probabilities:
        paths["probabilities.tif"] = outputs.temp("probabilities.tif")
    n_classes = config.n_classes
    writers = {
        "outlines.tif": rasterio.open(
            paths["outlines.tif"],
            "w",
            **geotiff_profile(base, count=1, dtype="uint8", nodata=OUTLINE_NODATA),
        ),
        "confidence.tif": rasterio.open(
            paths["confidence.tif"],
            "w",
            **geotiff_profile(base, count=1, dtype="float32", nodata=None),
        ),
    }
    if opts.probabilities:
        writers["probabilities.tif"] = rasterio.open(
            paths["probabilities.tif"],
            "w",
            **geotiff_profile(base, count=n_classes, dtype="float32", nodata=None),
        )
    writers["outlines.tif"].write_colormap(1, OUTLINE_COLORS)
    writers["outlines.tif"].set_band_description(1, "glacier outlines (1 glacier, 0 other)")
    writers["confidence.tif"].set_band_description(
        1, "calibrated confidence" if cal is not None else "confidence (1 - entropy)"
    )

    smoother = postprocess.RowSmoother(opts.smoothing, dataset.width)
    valid_rows = _ValidRows()
    counters = {"outline_row": 0, "glacier": 0, "valid": 0}
    timings["write_s"] = 0.0

    def write_outline_rows(rows: np.ndarray | None) -> None:
        if rows is None or not len(rows):
            return
        valid = valid_rows.take(len(rows))
        final = postprocess.apply_nodata(rows, valid)
        start = counters["outline_row"]
        win = rasterio.windows.Window(0, start, dataset.width, len(rows))
        writers["outlines.tif"].write(final, 1, window=win)
        counters["outline_row"] += len(rows)
        counters["glacier"] += int(np.count_nonzero(final == 1))
        counters["valid"] += int(np.count_nonzero(valid))

    def write_blended(done: tuple[int, np.ndarray] | None) -> None:
        if done is None:
            return
        start, probs = done
        t = time.perf_counter()
        win = rasterio.windows.Window(0, start, dataset.width, len(probs))
        conf = postprocess.confidence(probs, dtype=np.float64)
        if cal is not None:
            conf = cal.apply(conf)
        writers["confidence.tif"].write(conf.astype(np.float32), 1, window=win)
        if opts.probabilities:
            bands = np.moveaxis(probs.astype(np.float32), -1, 0)
            writers["probabilities.tif"].write(bands, window=win)
        write_outline_rows(smoother.push(postprocess.outlines(probs)))
        timings["write_s"] += time.perf_counter() - t

    try:
        timings.update(
            run_window_rows(
                _read_rows(dataset, layout, model, grid, location),
                grid=grid,
                predictor=predictor,
                on_item=lambda item: valid_rows.add(item.extra),
                on_rows=write_blended,
                progress=progress,
            )
        )
        write_outline_rows(smoother.finish())
    finally:
        for w in writers.values():
            w.close()
    if counters["outline_row"] != dataset.height:
        raise GlavizError(
            f"internal: wrote {counters['outline_row']} of {dataset.height} outline rows"
        )

    polygons = None
    if opts.vector:
        t = time.perf_counter()
        target = outputs.temp("outlines.gpkg")
        polygons = vectorise_outlines(paths["outlines.tif"], target)
        timings["vector_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start

    settings = {
        "stack": str(stack.resolve()),
        "weights": str(model.path.resolve()),
        "weights_spec": opts.weights,
        "registry_model": model.registry_name,
        "model_kind": model.kind,
        "architecture": config.model_dump(),
        "features": list(model.groups),
        "location": location_mode,
        "region_vector": str(opts.region_vector) if opts.region_vector else None,
        "region_vector_values": rv.tolist() if rv is not None else None,
        "region_vector_regions": rv_regions,
        "calibration": cal_source,
        "smoothing": opts.smoothing,
        "tta": opts.tta,
        "mc": opts.mc,
        "batch_size": opts.batch_size,
        "batch_size_used": batch,
        "precision": opts.precision,
        "probabilities": opts.probabilities,
        "vector": opts.vector,
    }
    glacier_fraction = counters["glacier"] / max(counters["valid"], 1)
    write_run_json(
        outputs.temp("run.json"),
        {
            "glaviz": __version__,
            "versions": _versions(),
            "settings": settings,
            "scene": {
                "height": dataset.height,
                "width": dataset.width,
                "crs": str(dataset.crs) if dataset.crs else None,
                "padded": [grid.padded_height, grid.padded_width],
                "padding": [grid.pad_top, grid.pad_left],
            },
            "windows": grid.n_windows,
            "windows_per_s": grid.n_windows / max(timings["loop_s"], 1e-9),
            "model_share_of_loop": timings["model_s"] / max(timings["loop_s"], 1e-9),
            "glacier_fraction_of_valid": glacier_fraction,
            "polygons": polygons,
            "timings": timings,
            # The resolved DeployConfig and its fingerprint: re-run with --config, skip-existing.
            **run_record(opts, command="deploy", weights=model.path),
        },
    )
    final = outputs.commit()
    return DeployResult(
        outdir=outputs.outdir,
        outputs=final,
        windows=grid.n_windows,
        polygons=polygons,
        glacier_fraction=glacier_fraction,
        timings=timings,
        settings=settings,
    )


def _versions() -> dict[str, str]:
    import keras
    import rasterio
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "numpy": np.__version__,
    }
