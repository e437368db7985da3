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
:func:`deploy` below is the whole data flow; :class:`DeployPlan` resolves the options against
the stack and the model first, so every error about them comes before any work.
"""

from __future__ import annotations

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

if TYPE_CHECKING:
    # For annotations only: each module is imported where deploy first uses it.
    from glaviz.calibration.model import CalibrationModel
    from glaviz.engine.loading import InferenceModel, ModelCache
    from glaviz.engine.quicklook import Quicklook
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
    """What a deploy run produced and how long its parts took."""

    outdir: Path
    outputs: list[Path]
    windows: int
    polygons: int | None
    glacier_fraction: float
    timings: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The line ``glaviz deploy`` prints."""
        loop_s = self.timings["loop_s"]
        return (
            f"{self.windows} windows in {loop_s:.1f} s "
            f"({self.windows / max(loop_s, 1e-9):.2f} windows/s); "
            f"glacier {100 * self.glacier_fraction:.1f} % of valid pixels"
            + (f", {self.polygons} polygons" if self.polygons is not None else "")
            + f"; outputs in {self.outdir}/"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz deploy``, less the ``status`` the CLI adds."""
        return {
            "outdir": str(self.outdir),
            "outputs": [str(p) for p in self.outputs],
            "counts": {
                "windows": self.windows,
                "polygons": self.polygons,
                "glacier_fraction": self.glacier_fraction,
            },
            "timings": self.timings,
        }


def deploy(
    config: DeployConfig,
    *,
    progress: bool = False,
    predictor: PredictorFactory | None = None,
    models: ModelCache | None = None,
) -> DeployResult:
    """Map glaciers on ``config.stack`` and write the outputs into ``config.outdir``.

    ``models``: a cache of loaded models, for a process that deploys scene after scene.
    """
    from glaviz.engine.reader import StackReader
    from glaviz.engine.writer import SceneWriter, write_record

    started = time.perf_counter()
    with (
        deploy_outputs(config.outdir, overwrite=config.overwrite) as outputs,
        _gdal_env(config.stack),
    ):
        plan = DeployPlan.resolve(config, predictor=predictor, models=models)
        loop_timings = LoopTimings()
        reader = StackReader(config.stack, **plan.reader_options())
        writer = SceneWriter(outputs, **plan.writer_options())
        bar = Progress(
            progress, total=plan.grid.n_windows, description="windows", rate_unit="windows"
        )
        with reader, writer, bar:
            blended = window_loop(
                reader,
                grid=plan.grid,
                predictor=plan.predictor,
                timings=loop_timings,
                bar=bar,
                prefetch=plan.prefetch(reader.strip_nbytes()),
            )
            streaming, cpu = time.perf_counter(), time.process_time()
            for rows in blended:
                writer.write(rows)
            streamed = time.perf_counter() - streaming  # read, predict, blend and write
            cpu = time.process_time() - cpu  # all threads: the cost a busy machine cannot hide
            summary = writer.finish()
        timings = {**plan.timings, **loop_timings.as_dict(), "loop_s": streamed, "loop_cpu_s": cpu}
        timings.update(summary.timings)
        timings["total_s"] = time.perf_counter() - started
        write_record(outputs, plan.record(summary, timings))
        return DeployResult(
            outdir=outputs.outdir,
            outputs=outputs.commit(),
            windows=plan.grid.n_windows,
            polygons=summary.polygons,
            glacier_fraction=summary.glacier_fraction,
            timings=timings,
            settings=plan.settings,
        )


def gdal_cache_mb(width: int, bands: int) -> int:
    """GDAL block cache for a scene ``width`` wide: two rows of 256² blocks of every band read
    (float32) plus the outputs (up to 4 float32 bands), at least :data:`GDAL_CACHE_MB`."""
    per_block_row = width * 256 * 4 * (bands + 4)
    return max(GDAL_CACHE_MB, math.ceil(2 * per_block_row / 2**20))


def _gdal_env(stack: Path) -> Any:
    """GDAL settings for one deploy run, sized from the stack."""
    import rasterio

    try:
        with rasterio.open(stack) as ds:
            width, count = ds.width, ds.count
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open stack {stack}: {exc}") from None
    # GDAL's block cache defaults to 5 % of RAM and keeps every block read or written, so it would
    # grow with the scene area; every strip is read once and rows are written in order, so a
    # small cache loses nothing and keeps memory bounded by the scene width.
    return rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb(width, count))


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
    quicklook: Quicklook | None
    timings: dict[str, float]

    @classmethod
    def resolve(
        cls,
        config: DeployConfig,
        *,
        predictor: PredictorFactory | None = None,
        models: ModelCache | None = None,
    ) -> DeployPlan:
        import rasterio

        from glaviz.engine.inference import BatchedModel, batch_size_for_budget
        from glaviz.engine.loading import load_for_inference
        from glaviz.engine.quicklook import Quicklook
        from glaviz.engine.tiling import tile_grid
        from glaviz.published.stack_layout import StackLayout

        with rasterio.open(config.stack) as ds:
            layout = StackLayout.read(ds)
            scene = {
                "width": ds.width,
                "height": ds.height,
                "crs": ds.crs,
                "transform": ds.transform,
            }
            if ds.count == 0 or ds.height == 0 or ds.width == 0:
                raise InputError(f"{config.stack} is empty")
            coordinates = SceneCoordinates(ds) if config.coordinate_encoding else None
        rv, rv_regions = (
            load_region_vector(config.region_vector) if config.region_vector else (None, None)
        )
        t0 = time.perf_counter()
        load = models.load if models is not None else load_for_inference
        model = load(
            config.weights,
            features=config.features,
            location="region" if rv is not None else "coordinate" if coordinates else "none",
            mc_dropout=config.mc > 0,
            precision=config.precision,
        )
        timings = {"load_model_s": time.perf_counter() - t0}
        arch = model.config
        layout.require(model.groups)
        if rv is not None and rv.size != arch.location_size:
            names = ", ".join(region_names(arch.location_size, known=model.region_names))
            raise ConfigError(
                f"region vector {config.region_vector} has {rv.size} values, but the model's "
                f"location input has {arch.location_size} ({names}); "
                "make one for this model with glaviz optimise-bias"
            )
        calibration, source = _resolve_calibration(config.calibration, model)
        grid = tile_grid(scene["height"], scene["width"], arch.patch_size)
        if config.batch_size is not None:
            largest = config.batch_size
        else:
            largest = batch_size_for_budget(
                arch, budget_mb=config.activation_budget_mb, tta=config.tta
            )
        batch = best_batch_size(grid.n_windows, largest)
        factory = predictor or (models.runner if models is not None else BatchedModel.for_deploy)
        return cls(
            config=config,
            stack=layout,
            scene=scene,
            model=model,
            grid=grid,
            location=rv if rv is not None else coordinates,
            region_vector_regions=rv_regions,
            calibration=calibration,
            calibration_source=source,
            batch_size=batch,
            predictor=factory(model, batch, config),
            quicklook=Quicklook(scene["height"], scene["width"]) if config.quicklook else None,
            timings=timings,
        )

    def reader_options(self) -> dict[str, Any]:
        return {
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
            "tta": c.tta,
            "mc": c.mc,
            "batch_size": c.batch_size,
            "batch_size_used": self.batch_size,
            "activation_budget_mb": c.activation_budget_mb,
            "precision": c.precision,
            "probabilities": c.probabilities,
            "vector": c.vector,
            "quicklook": c.quicklook,
        }

    def record(self, summary: Any, timings: dict[str, float]) -> dict[str, Any]:
        """The run record: the configuration (a valid ``--config``), settings, scene, timings."""
        grid = self.grid
        windows = grid.n_windows
        from glaviz.runs.records import run_record

        return {
            # glaviz version, command, config (a valid --config) and fingerprint (--skip-existing)
            **run_record(self.config, command="deploy", weights=self.model.path),
            "versions": _versions(),
            "settings": self.settings,
            "scene": {
                "height": grid.height,
                "width": grid.width,
                "crs": str(self.scene["crs"]) if self.scene["crs"] else None,
                "padded": [grid.padded_height, grid.padded_width],
                "padding": [grid.pad_top, grid.pad_left],
            },
            "windows": windows,
            "windows_per_s": windows / max(timings["loop_s"], 1e-9),
            "model_share_of_loop": timings["model_s"] / max(timings["loop_s"], 1e-9),
            "glacier_fraction_of_valid": summary.glacier_fraction,
            "polygons": summary.polygons,
            "timings": timings,
        }


def _resolve_calibration(
    name: str | None, model: InferenceModel
) -> tuple[CalibrationModel | None, str | None]:
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
