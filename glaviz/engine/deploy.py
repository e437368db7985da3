"""``glaviz deploy``: map glaciers on a whole feature stack, as three streaming stages.

::

    stack.tif ─► StackReader ─► window_loop ─► SceneWriter ─► outlines.tif, confidence.tif, …
                 (reader.py)    (loop.py)      (writer.py)
                 read once,     batch, model,  calibrate, smooth, nodata,
                 validity,      Gaussian       COG + overviews, polygons,
                 normalise,     blend          quicklook; run.json last
                 pad, cut

The reader runs ahead of the model in a prefetch thread, decoding with several threads; memory
is bounded by the scene width times about two window heights, whatever the scene height.
:func:`deploy` below is the whole data flow. :func:`preflight` checks the stack, the weights,
every option and the free disk space without TensorFlow (in well under a second, so that a cheap
mistake gets a cheap answer); :class:`DeployPlan` then loads the model. Every error about the
inputs or the options comes before any work, and everything a failing run opened (reader
threads, dataset handles, streamed files) is closed before the error is reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.config.deploy import DeployConfig
from glaviz.engine.loop import LoopTimings, Predictor, best_batch_size, window_loop
from glaviz.engine.outputs import deploy_outputs
from glaviz.errors import ConfigError, InputError
from glaviz.published.location import SceneCoordinates, region_names
from glaviz.util.progress import Progress
from glaviz.util.units import format_bytes

if TYPE_CHECKING:
    # For annotations only: each module is imported where deploy first uses it.
    from glaviz.calibration.model import CalibrationModel
    from glaviz.engine.loading import InferenceModel, LocationMode, ModelCache, WeightsInfo
    from glaviz.engine.quicklook import Quicklook
    from glaviz.engine.reader import StackInfo
    from glaviz.engine.roi import RoiMask
    from glaviz.engine.selection import SelectionCounts
    from glaviz.engine.tiling import TileGrid
    from glaviz.published.stack_layout import StackLayout

log = logging.getLogger(__name__)

#: Smallest GDAL block cache for deploy, in MB.
GDAL_CACHE_MB = 128
#: Memory the reader may fill ahead of the model, in MB (at least one window row is prefetched,
#: at most :data:`MAX_PREFETCH`): one strip for the published model at 1500² and wider, more
#: only for narrow scenes. A deeper queue buys nothing when the model is the slow stage (the
#: reader is several times faster than the model) and would raise the peak RSS.
PREFETCH_MB = 32
MAX_PREFETCH = 4

#: Builds the model runner from the loaded model and the batch size (tests and benchmarks
#: pass a stand-in here; deploy uses :meth:`glaviz.engine.inference.BatchedModel.for_model`).
PredictorFactory = Callable[[Any, int, DeployConfig], Predictor]


@dataclass
class DeployResult:
    """What a deploy run produced and how long its parts took.

    ``windows``: the windows of the grid; ``selection``: how many were computed and how many
    each rule left out (:class:`~glaviz.engine.selection.SelectionCounts`); ``pixels``: mapped,
    invalid input and not mapped (outside the region of interest).
    """

    outdir: Path
    outputs: list[Path]
    windows: int
    polygons: int | None
    glacier_fraction: float
    timings: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    selection: SelectionCounts | None = None
    pixels: dict[str, int] = field(default_factory=dict)

    @property
    def windows_computed(self) -> int:
        return self.selection.computed if self.selection is not None else self.windows

    def summary(self) -> str:
        """The line ``glaviz deploy`` prints."""
        loop_s = self.timings["loop_s"]
        computed = self.windows_computed
        skipped = ""
        if self.selection is not None and computed < self.windows:
            parts = [f"{self.selection.no_valid_pixel} without a valid pixel"]
            if self.settings.get("roi"):
                parts.append(f"{self.selection.outside_roi} outside the region of interest")
            skipped = f" ({', '.join(parts)} skipped)"
        not_mapped = self.pixels.get("not_mapped", 0)
        return (
            f"{computed} of {self.windows} windows computed{skipped} in {loop_s:.1f} s "
            f"({computed / max(loop_s, 1e-9):.2f} windows/s); "
            f"glacier {100 * self.glacier_fraction:.1f} % of valid pixels"
            + (f", {self.polygons} polygons" if self.polygons is not None else "")
            + (f"; {not_mapped} pixels not mapped" if not_mapped else "")
            + f"; outputs in {self.outdir}/"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz deploy``, less the ``status`` the CLI adds."""
        counts: dict[str, Any] = {
            "windows": self.windows,
            "polygons": self.polygons,
            "glacier_fraction": self.glacier_fraction,
        }
        if self.selection is not None:
            counts["windows_computed"] = self.selection.computed
            counts["windows_skipped_no_valid_pixel"] = self.selection.no_valid_pixel
            counts["windows_skipped_outside_roi"] = self.selection.outside_roi
        counts.update({f"pixels_{k}": v for k, v in self.pixels.items()})
        return {
            "outdir": str(self.outdir),
            "outputs": [str(p) for p in self.outputs],
            "counts": counts,
            "timings": self.timings,
        }


def deploy(
    config: DeployConfig,
    *,
    progress: bool = False,
    predictor: PredictorFactory | None = None,
    models: ModelCache | None = None,
    skip_empty: bool = True,
) -> DeployResult:
    """Map glaciers on ``config.stack`` and write the outputs into ``config.outdir``.

    ``models``: a cache of loaded models, for a process that deploys scene after scene.
    ``skip_empty``: leave out windows with no valid pixel (:mod:`glaviz.engine.selection`);
    False computes every window of the grid (benchmarks and tests compare the two).
    """
    from glaviz.engine.reader import StackReader
    from glaviz.engine.selection import WindowSelection
    from glaviz.engine.writer import SceneWriter, write_record
    from glaviz.util.tf import import_tensorflow

    started = time.perf_counter()
    checked = preflight(config)
    # Only now: everything checkable without TensorFlow has been checked. Its start-up is timed
    # apart (tensorflow_s), not in total_s, which stays the cost of this scene.
    tf_started = time.perf_counter()
    import_tensorflow()
    tensorflow_s = time.perf_counter() - tf_started
    with contextlib.ExitStack() as stack:
        # Entered in order and closed in reverse, also when a later stage fails to start: the
        # window loop's prefetch thread first, then the writer's files, the reader's threads
        # and handles, GDAL's settings and last the output folder (which removes the scratch).
        outputs = stack.enter_context(deploy_outputs(config.outdir, overwrite=config.overwrite))
        stack.enter_context(_gdal_env(checked))
        plan = DeployPlan.resolve(config, predictor=predictor, models=models, checked=checked)
        loop_timings = LoopTimings()
        selection = WindowSelection(
            plan.grid, allowed=plan.allowed, skip_empty=skip_empty, halo=plan.halo
        )
        reader = stack.enter_context(StackReader(config.stack, **plan.reader_options()))
        writer = stack.enter_context(SceneWriter(outputs, **plan.writer_options()))
        bar = stack.enter_context(
            Progress(
                progress, total=plan.grid.n_windows, description="windows", rate_unit="windows"
            )
        )
        blended = stack.enter_context(
            contextlib.closing(
                window_loop(
                    reader,
                    grid=plan.grid,
                    predictor=plan.predictor,
                    timings=loop_timings,
                    bar=bar,
                    prefetch=plan.prefetch(reader.strip_nbytes()),
                    blend=plan.blend,
                    selection=selection,
                    n_classes=plan.model.config.n_classes,
                )
            )
        )
        streaming, cpu = time.perf_counter(), time.process_time()
        for rows in blended:
            writer.write(rows)
        streamed = time.perf_counter() - streaming  # read, predict, blend and write
        cpu = time.process_time() - cpu  # all threads: the cost a busy machine cannot hide
        summary = writer.finish()
        timings = {**plan.timings, **loop_timings.as_dict(), "loop_s": streamed, "loop_cpu_s": cpu}
        timings.update(summary.timings)
        timings["tensorflow_s"] = tensorflow_s
        timings["total_s"] = time.perf_counter() - started - tensorflow_s
        settings = {**plan.settings, "skip_empty": skip_empty}
        write_record(outputs, plan.record(summary, timings, selection.counts, settings))
        return DeployResult(
            outdir=outputs.outdir,
            outputs=outputs.commit(),
            windows=plan.grid.n_windows,
            polygons=summary.polygons,
            glacier_fraction=summary.glacier_fraction,
            timings=timings,
            settings=settings,
            selection=selection.counts,
            pixels=summary.pixels(),
        )


def gdal_cache_mb(width: int, bands: int) -> int:
    """GDAL block cache for a scene ``width`` wide: two rows of 256² blocks of every band read
    (float32) plus the outputs (up to 4 float32 bands), at least :data:`GDAL_CACHE_MB`."""
    per_block_row = width * 256 * 4 * (bands + 4)
    return max(GDAL_CACHE_MB, math.ceil(2 * per_block_row / 2**20))


def _gdal_env(checked: DeployCheck) -> Any:
    """GDAL settings for one deploy run, sized from the stack."""
    import rasterio

    # GDAL's block cache defaults to 5 % of RAM and keeps every block read or written, so it would
    # grow with the scene area; every strip is read once and rows are written in order, so a
    # small cache loses nothing and keeps memory bounded by the scene width.
    return rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb(checked.stack.width, checked.stack.count))


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


@dataclass(frozen=True)
class DeployCheck:
    """What deploy knows before TensorFlow is imported: the stack, the weights' architecture,
    the window grid, the location input and the calibration, all checked (:func:`preflight`)."""

    config: DeployConfig
    stack: StackInfo
    weights: WeightsInfo
    grid: TileGrid
    region_vector: np.ndarray | None
    region_vector_regions: list[str] | None
    calibration: CalibrationModel | None
    calibration_source: str | None
    disk_needed: int
    roi: RoiMask | None = None
    #: Windows that meet the region of interest (None: no region, every window).
    allowed: np.ndarray | None = None
    #: Pixels a window's outputs reach beyond it (the smoothing's half size).
    halo: int = 0

    @property
    def windows_to_consider(self) -> int:
        """Windows the run may compute: those meeting the region of interest, or all."""
        return self.grid.n_windows if self.allowed is None else int(self.allowed.sum())

    @property
    def location(self) -> np.ndarray | SceneCoordinates | None:
        return self.region_vector if self.region_vector is not None else self.stack.coordinates


def _location_mode(config: DeployConfig) -> LocationMode:
    """The location input the options supply, for the check against the model's."""
    if config.region_vector is not None:
        return "region"
    return "coordinate" if config.coordinate_encoding else "none"


def preflight(config: DeployConfig) -> DeployCheck:
    """Every check of a deploy run that needs no TensorFlow, before any work.

    In order: the output folder can be written; the stack opens, has a CRS and optical bands
    that can be reflectance (a few windows are read); the weights resolve and, read without
    TensorFlow, fit ``--features``, the location options and the stack's feature groups; the
    region vector and calibration files read; ``--smoothing`` fits the scene; and the disk has
    room for the outputs (:func:`~glaviz.engine.outputs.disk_space_needed`). Each failure is one
    :class:`~glaviz.errors.GlavizError` line: a missing stack or an unknown weights name is
    reported in well under a second instead of after TensorFlow's start-up.
    """
    from glaviz.engine.loading import inspect_weights
    from glaviz.engine.outputs import disk_space_needed
    from glaviz.engine.reader import inspect_stack
    from glaviz.engine.tiling import tile_grid
    from glaviz.runs.writes import require_disk_space, require_writable

    require_writable(config.outdir)
    stack = inspect_stack(config.stack, coordinates=config.coordinate_encoding)
    rv, rv_regions = (
        load_region_vector(config.region_vector) if config.region_vector else (None, None)
    )
    weights = inspect_weights(
        config.weights, features=config.features, location=_location_mode(config)
    )
    arch = weights.config
    stack.layout.require(weights.groups)
    if rv is not None and rv.size != arch.location_size:
        names = ", ".join(region_names(arch.location_size, known=weights.region_names))
        raise ConfigError(
            f"region vector {config.region_vector} has {rv.size} values, but the model's "
            f"location input has {arch.location_size} ({names}); "
            "make one for this model with glaviz optimise-bias"
        )
    calibration, source = _resolve_calibration(config.calibration, weights)
    short = min(stack.height, stack.width)
    if config.smoothing > short:
        raise ConfigError(
            f"--smoothing {config.smoothing} is larger than the scene ({stack.height} × "
            f"{stack.width} pixels): the median filter must fit in its short side; use at most "
            f"{short} (a few pixels, e.g. 3 or 5, is usual)"
        )
    grid = tile_grid(stack.height, stack.width, arch.patch_size)
    roi, allowed, halo = _region_of_interest(config, stack, grid)
    needed = disk_space_needed(
        stack.height, stack.width, n_classes=arch.n_classes, probabilities=config.probabilities
    )
    require_disk_space(config.outdir, needed)
    log.info(
        "%s: %d × %d pixels, %d windows of %d²; about %s of disk space needed",
        config.stack,
        stack.height,
        stack.width,
        grid.n_windows,
        arch.patch_size,
        format_bytes(needed),
    )
    return DeployCheck(
        config=config,
        stack=stack,
        weights=weights,
        grid=grid,
        region_vector=rv,
        region_vector_regions=rv_regions,
        calibration=calibration,
        calibration_source=source,
        disk_needed=needed,
        roi=roi,
        allowed=allowed,
        halo=halo,
    )


def smoothing_halo(smoothing: int) -> int:
    """Pixels beyond a window that its outputs reach: a median of size ``N`` at a pixel reads
    the argmax of pixels up to ``N // 2`` away (none without smoothing)."""
    return smoothing // 2 if smoothing > 1 else 0


def _region_of_interest(
    config: DeployConfig, stack: StackInfo, grid: TileGrid
) -> tuple[RoiMask | None, np.ndarray | None, int]:
    """The region of interest on the stack's grid, the windows that meet it, and the halo."""
    from glaviz.engine.roi import load_roi

    halo = smoothing_halo(config.smoothing)
    roi = load_roi(config, stack)
    if roi is None:
        return None, None, halo
    allowed = roi.window_hits(grid, halo)
    log.info(
        "region of interest %s: %.1f %% of the scene, %d of %d windows",
        roi.source.path,
        100 * roi.inside / (stack.height * stack.width),
        int(allowed.sum()),
        grid.n_windows,
    )
    return roi, allowed, halo


@dataclass
class DeployPlan:
    """Everything a deploy run resolved before the first pixel: model, grid, location input,
    calibration, batch size, and the settings it records."""

    config: DeployConfig
    stack: StackLayout
    scene: dict[str, Any]  # width, height, crs, transform
    model: InferenceModel
    grid: TileGrid
    location: np.ndarray | SceneCoordinates | None
    region_vector_regions: list[str] | None
    calibration: CalibrationModel | None
    calibration_source: str | None
    batch_size: int
    predictor: Predictor
    roi: RoiMask | None
    allowed: np.ndarray | None
    halo: int
    quicklook: Quicklook | None
    timings: dict[str, float]
    acquisition_date: str | None = None

    @property
    def blend(self) -> str:
        """The window weights: ``--blend``, where ``auto`` is the published Gaussian for published
        weights (so published accuracy holds) and the taper for glaviz's own models, whose
        windows' edges would otherwise show as a grid of seams in the confidence."""
        if self.config.blend != "auto":
            return self.config.blend
        return "taper" if self.model.kind == "bundle" else "gaussian"

    @classmethod
    def resolve(
        cls,
        config: DeployConfig,
        *,
        predictor: PredictorFactory | None = None,
        models: ModelCache | None = None,
        checked: DeployCheck | None = None,
    ) -> DeployPlan:
        """Check everything (:func:`preflight`, unless ``checked`` is its result for this
        ``config``), then load the model and choose the batch size."""
        from glaviz.engine.inference import BatchedModel, batch_size_for_budget
        from glaviz.engine.loading import load_for_inference
        from glaviz.engine.quicklook import Quicklook

        checked = checked if checked is not None else preflight(config)
        stack, grid = checked.stack, checked.grid
        location = checked.location
        t0 = time.perf_counter()
        load = models.load if models is not None else load_for_inference
        model = load(
            config.weights,
            features=config.features,
            location=_location_mode(config),
            mc_dropout=config.mc > 0,
            precision=config.precision,
        )
        timings = {"load_model_s": time.perf_counter() - t0}
        arch = model.config
        if config.batch_size is not None:
            largest = config.batch_size
        else:
            largest = batch_size_for_budget(
                arch, budget_mb=config.activation_budget_mb, tta=config.tta
            )
        # Windows outside the region of interest are never computed; those without a valid
        # pixel are known only as the stack is read, so they still count here.
        windows = max(checked.windows_to_consider, 1)
        if largest > windows:
            log.info(
                "batch size %d is more than the scene's %d windows; using at most %d",
                largest,
                windows,
                windows,
            )
        batch = best_batch_size(windows, largest)
        factory = predictor or (models.runner if models is not None else BatchedModel.for_deploy)
        return cls(
            config=config,
            stack=stack.layout,
            scene=stack.grid,
            model=model,
            grid=grid,
            location=location,
            region_vector_regions=checked.region_vector_regions,
            calibration=checked.calibration,
            calibration_source=checked.calibration_source,
            batch_size=batch,
            predictor=factory(model, batch, config),
            roi=checked.roi,
            allowed=checked.allowed,
            halo=checked.halo,
            quicklook=(
                Quicklook(stack.height, stack.width, legend=checked.roi is not None)
                if config.quicklook
                else None
            ),
            timings=timings,
            acquisition_date=stack.acquisition_date,
        )

    def reader_options(self) -> dict[str, Any]:
        from glaviz.engine.selection import rows_to_read

        return {
            "rows_needed": rows_to_read(self.grid, self.allowed, self.halo),
            "layout": self.stack,
            "groups": self.model.groups,
            "stats": self.model.stats,
            "grid": self.grid,
            "location": self.location,
            "rgb_columns": self.quicklook.columns if self.quicklook else None,
        }

    def writer_options(self) -> dict[str, Any]:
        c = self.config
        return {
            "grid": self.scene,
            "n_classes": self.model.config.n_classes,
            "calibration": self.calibration,
            "smoothing": c.smoothing,
            "probabilities": c.probabilities,
            "vector": c.vector,
            "quicklook": self.quicklook,
            "roi": self.roi,
        }

    def prefetch(self, strip_nbytes: int) -> int:
        """Window rows the reader runs ahead: as many strips as :data:`PREFETCH_MB` holds."""
        return max(1, min(MAX_PREFETCH, PREFETCH_MB * 2**20 // max(strip_nbytes, 1)))

    @property
    def settings(self) -> dict[str, Any]:
        c, model = self.config, self.model
        rv = self.location if isinstance(self.location, np.ndarray) else None
        return {
            "stack": str(Path(c.stack).resolve()),
            "weights": str(model.path.resolve()),
            "weights_spec": c.weights,
            "registry_model": model.registry_name,
            "model_kind": model.kind,
            "architecture": model.config.model_dump(),
            "features": list(model.groups),
            "location": "region" if rv is not None else "coordinate" if self.location else "none",
            "region_vector": str(c.region_vector) if c.region_vector else None,
            "region_vector_values": rv.tolist() if rv is not None else None,
            "region_vector_regions": self.region_vector_regions,
            "calibration": self.calibration_source,
            "smoothing": c.smoothing,
            "blend": self.blend,
            "tta": c.tta,
            "mc": c.mc,
            "batch_size": c.batch_size,
            "batch_size_used": self.batch_size,
            "activation_budget_mb": c.activation_budget_mb,
            "precision": c.precision,
            "probabilities": c.probabilities,
            "vector": c.vector,
            "quicklook": c.quicklook,
            "roi": self.roi.source.record() if self.roi is not None else None,
        }

    def record(
        self,
        summary: Any,
        timings: dict[str, float],
        selection: SelectionCounts,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        """The run record: the configuration (a valid ``--config``), settings, scene, windows
        computed and skipped, pixels mapped / invalid / not mapped, timings."""
        grid = self.grid
        windows = grid.n_windows
        from glaviz.runs.records import run_record

        return {
            # glaviz version, command, config (a valid --config) and fingerprint (--skip-existing)
            **run_record(self.config, command="deploy", weights=self.model.path),
            "versions": _versions(),
            "settings": settings,
            "scene": {
                "height": grid.height,
                "width": grid.width,
                "crs": str(self.scene["crs"]) if self.scene["crs"] else None,
                "padded": [grid.padded_height, grid.padded_width],
                "padding": [grid.pad_top, grid.pad_left],
                "acquisition_date": self.acquisition_date,
            },
            "windows": windows,
            "windows_computed": selection.computed,
            "windows_skipped": {
                "no_valid_pixel": selection.no_valid_pixel,
                "outside_roi": selection.outside_roi,
            },
            "pixels": summary.pixels(),
            "windows_per_s": selection.computed / max(timings["loop_s"], 1e-9),
            "model_share_of_loop": timings["model_s"] / max(timings["loop_s"], 1e-9),
            "glacier_fraction_of_valid": summary.glacier_fraction,
            "polygons": summary.polygons,
            "timings": timings,
        }


def _resolve_calibration(
    name: str | None, model: InferenceModel | WeightsInfo
) -> tuple[CalibrationModel | None, str | None]:
    """The calibration deploy applies: ``--calibration`` (a file, a packaged name, ``none``),
    else the bundle's own, else the one the registry names for the weights."""
    from glaviz.calibration import CalibrationModel

    if name is not None and name.strip().lower() == "none":
        return None, None
    if name is None:
        if model.calibration is not None:
            return CalibrationModel.from_dict(model.calibration, source=str(model.path)), "bundle"
        if model.calibration_name is None:
            return None, None
        name = model.calibration_name
    from glaviz.registry.catalogue import calibration_path

    path = calibration_path(name)
    return CalibrationModel.load(path), str(path)


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
