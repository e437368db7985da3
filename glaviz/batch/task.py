"""The per-scene task: features (when the scene gives raw inputs), deploy, area, record.

It runs on a Dask worker (or in the process itself with ``--shard``). Errors glaviz raises on
purpose (bad data, bad configuration, unusable weights) come back as a *failed* outcome: they
would fail the same way again, so they are never retried. Anything else propagates, so the
client can tell transient failures (a lost worker, memory) from the rest.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from glaviz.batch.done import forget, write_done
from glaviz.batch.plan import ScenePlan, worker_name
from glaviz.errors import GlavizError

if TYPE_CHECKING:
    from glaviz.acquire.run import AcquireResult
    from glaviz.engine.deploy import DeployResult

#: Outcome statuses: computed now, skipped (record matched), failed.
DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass
class SceneOutcome:
    """One scene's result, as the summary reports it."""

    id: str
    status: str
    date: str | None = None
    error: str = ""
    attempts: int = 0
    worker: str = ""
    windows: int | None = None
    windows_computed: int | None = None
    windows_skipped_no_valid_pixel: int | None = None
    windows_skipped_outside_roi: int | None = None
    polygons: int | None = None
    #: Shares of the scene's pixels: invalid input, and outside the region of interest (not
    #: mapped). Both are unobserved, never "no ice".
    invalid_fraction: float | None = None
    not_mapped_fraction: float | None = None
    glacier_area_km2: float | None = None
    #: Scenes built from a region: the dates acquired (";"-separated), the cloud inside the AOI
    #: and the AOI's coverage by the imagery (fractions), as acquire.json records them.
    acquired_dates: str | None = None
    cloud_in_aoi: float | None = None
    coverage: float | None = None
    peak_rss_mb: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_worker() -> str:
    """The Dask worker's name (its address when unnamed), or ``host:pid`` outside Dask."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return worker_name()
    return str(worker.name if worker.name is not None else worker.address)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (the worker's, on Dask), in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


#: Serialises TensorFlow's first import in a worker with several threads: two threads importing
#: it at once see a partially initialised module.
_TF_START = threading.Lock()


#: This worker process's loaded models, reused by the scenes that share their weights.
_MODELS: Any = None


def worker_models() -> Any:
    """The worker's :class:`~glaviz.engine.loading.ModelCache` (one per process)."""
    global _MODELS
    if _MODELS is None:
        from glaviz.engine.loading import ModelCache

        _MODELS = ModelCache()
    return _MODELS


def start_tensorflow() -> None:
    """Import TensorFlow once per process and size its thread pools before its runtime starts.

    The cluster sets ``TF_NUM_INTRAOP_THREADS`` per worker (cores ÷ workers), so several workers
    on one machine do not each start a pool as large as the machine.
    """
    from glaviz.util.tf import import_tensorflow

    with _TF_START:
        tf = import_tensorflow()
        intra = os.environ.get("TF_NUM_INTRAOP_THREADS")
        if intra:
            _size_pools(tf, int(intra))


def _size_pools(tf: Any, intra: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(
            int(os.environ.get("TF_NUM_INTEROP_THREADS", "1"))
        )
    except RuntimeError:
        pass  # the runtime already started in this process: the sizes are already fixed


def run_scene(plan: ScenePlan, attempt: int = 1) -> SceneOutcome:
    """Compute one scene into ``plan.folder`` and record it as done."""
    started = time.perf_counter()
    outcome = SceneOutcome(id=plan.id, status=FAILED, date=plan.date, attempts=attempt)
    outcome.worker = current_worker()
    try:
        start_tensorflow()
        forget(plan.folder)
        computed = _compute(plan)
    except GlavizError as exc:
        outcome.error = str(exc)
        outcome.timings = {"total_s": time.perf_counter() - started}
        return outcome
    _fill(outcome, computed)
    outcome.timings["total_s"] = time.perf_counter() - started
    outcome.peak_rss_mb = peak_rss_mb()
    write_done(
        plan.folder,
        {
            **outcome.to_dict(),
            "fingerprint": plan.fingerprint,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    return outcome


@dataclass
class _Computed:
    """What one scene's stages produced."""

    result: DeployResult
    area: float
    features_s: float = 0.0
    acquired: AcquireResult | None = None  # a scene built from a region
    acquire_s: float = 0.0


def _fill(outcome: SceneOutcome, computed: _Computed) -> None:
    """A computed scene's figures, as summary.csv and its done record report them."""
    result = computed.result
    outcome.status = DONE
    outcome.windows = result.windows
    if result.selection is not None:
        outcome.windows_computed = result.selection.computed
        outcome.windows_skipped_no_valid_pixel = result.selection.no_valid_pixel
        outcome.windows_skipped_outside_roi = result.selection.outside_roi
    if result.pixels:
        total = max(sum(result.pixels.values()), 1)
        outcome.invalid_fraction = result.pixels["invalid_input"] / total
        outcome.not_mapped_fraction = result.pixels["not_mapped"] / total
    outcome.polygons = result.polygons
    outcome.glacier_area_km2 = computed.area
    outcome.timings = {
        "acquire_s": computed.acquire_s,
        "features_s": computed.features_s,
        "load_model_s": result.timings.get("load_model_s", 0.0),
        "deploy_s": result.timings.get("total_s", 0.0),
    }
    acquired = computed.acquired
    if acquired is not None:
        from glaviz.acquire.select import composite_date

        outcome.date = composite_date(acquired.dates).isoformat()
        outcome.acquired_dates = ";".join(d.isoformat() for d in acquired.dates)
        outcome.cloud_in_aoi = acquired.cloud_fraction
        outcome.coverage = acquired.coverage


def _compute(plan: ScenePlan) -> _Computed:
    from glaviz.batch.results import glacier_area_km2
    from glaviz.engine.deploy import deploy

    acquired, acquire_s = None, 0.0
    if plan.acquire is not None:
        from glaviz.acquire.run import acquire

        t = time.perf_counter()
        acquired = acquire(plan.acquire)
        acquire_s = time.perf_counter() - t
    features_s = 0.0
    if plan.features is not None:
        from glaviz.features import run_features

        t = time.perf_counter()
        run_features(plan.features)
        features_s = time.perf_counter() - t
    result = deploy(plan.deploy, models=worker_models())
    area = glacier_area_km2(plan.folder / "outlines.gpkg")
    return _Computed(result, area, features_s, acquired, acquire_s)
