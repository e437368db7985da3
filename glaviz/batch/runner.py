"""``glaviz batch``: plan the scenes, skip the done ones, run the rest, merge the results.

The top function reads like the data flow: load the job → plan every scene (settings,
fingerprint) → keep those whose record does not match → run them on Dask (or in this process for
one ``--shard``) with retries for transient failures → write ``summary.csv`` and the merged
``outlines.gpkg`` over every scene of the job that is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glaviz.batch.done import load_done, why_not_done
from glaviz.batch.plan import (
    PlanError,
    ScenePlan,
    WeightsHashes,
    plan_scene,
    shard_of,
    worker_name,
)
from glaviz.batch.results import merge_outlines, write_summary
from glaviz.batch.task import DONE, FAILED, SKIPPED, SceneOutcome, run_scene
from glaviz.config.batch import load_job
from glaviz.util.progress import Progress

log = logging.getLogger(__name__)

#: Status of a scene outside this run's shard that has no matching record yet.
PENDING = "pending"


@dataclass
class BatchResult:
    """What a batch run did, scene by scene, and where its products are."""

    output: Path
    outcomes: list[SceneOutcome]
    summary: Path
    outlines: Path
    polygons: int
    dashboard: str | None
    workers: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no scene failed (scenes of other shards may still be pending)."""
        return not any(o.status == FAILED for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "summary": str(self.summary),
            "outlines": str(self.outlines),
            "polygons": self.polygons,
            "dashboard": self.dashboard,
            "workers": self.workers,
            "seconds": self.seconds,
            "counts": self.counts,
            "scenes": [o.to_dict() for o in self.outcomes],
        }


def is_transient(exc: BaseException) -> bool:
    """Failures worth another attempt: the worker died or was lost, or memory ran out."""
    if isinstance(exc, MemoryError):
        return True
    try:
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker
    except ImportError:
        return False
    return isinstance(exc, KilledWorker | CommClosedError)


def run_batch(
    job_file: str | Path,
    *,
    scheduler: str = "local",
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    retries: int = 2,
    force: bool = False,
    progress: bool = False,
    client: Any = None,
    announce: Callable[[str], None] | None = None,
) -> BatchResult:
    """Run every scene of ``job_file`` that is not done yet, and merge the results.

    ``shard=(i, n)`` runs only the scenes in shard ``i`` of ``n``, in this process, without Dask.
    ``client``: an already connected :class:`distributed.Client` to run on (instead of
    ``scheduler``). ``announce`` receives one-line notices (the dashboard address).
    """
    from glaviz.errors import ConfigError

    started = time.perf_counter()
    if retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {retries}")
    job, specs = load_job(job_file)
    hashes = WeightsHashes()
    plans = [plan_scene(job, spec, hashes=hashes) for spec in specs]
    mine = {p.id for p in plans if shard is None or shard_of(p.id, shard[1]) == shard[0]}
    outcomes, todo = _triage(plans, mine=mine, force=force)
    with Progress(progress, total=len(todo), description="scenes", rate_unit="scenes") as bar:

        def finished(outcome: SceneOutcome) -> None:
            outcomes[outcome.id] = outcome
            bar.advance()

        try:
            if todo and shard is None:
                dashboard, n_workers = _run_on_dask(
                    todo,
                    scheduler=scheduler,
                    workers=workers,
                    retries=retries,
                    client=client,
                    announce=announce,
                    on_outcome=finished,
                    scratch=job.output,
                )
            else:
                _run_here(todo, retries=retries, on_outcome=finished)
                dashboard, n_workers = None, 1
        finally:
            # Every writer ran on this machine and has stopped (the embedded cluster is closed,
            # or the scenes ran in this process): what a killed or cancelled one left can go now,
            # so that an interrupted batch really leaves no partial files behind. Workers of an
            # outside cluster may still be writing, on other machines: their next run sweeps.
            if shard is not None or (client is None and scheduler == "local"):
                _sweep(todo)
    ordered = [outcomes[s.id] for s in specs]
    return _merge(job.output, ordered, dashboard=dashboard, workers=n_workers, started=started)


def _sweep(todo: list[ScenePlan]) -> None:
    from glaviz.runs.outputs import sweep_folder

    for plan in todo:
        swept = sweep_folder(plan.folder)
        if swept:
            log.info("%s: removed %d leftover(s) of stopped workers", plan.id, len(swept))


def _triage(
    plans: list[ScenePlan | PlanError], *, mine: set[str], force: bool
) -> tuple[dict[str, SceneOutcome], list[ScenePlan]]:
    """The outcome of every scene known before running any, and the scenes this run computes.

    A scene is failed (its plan failed, in this shard), skipped (its record matches, unless
    ``force`` for this shard's scenes), to do (this shard's, not done) or pending (another
    shard's, not done yet).
    """
    outcomes: dict[str, SceneOutcome] = {}
    todo: list[ScenePlan] = []
    for plan in plans:
        if isinstance(plan, PlanError):
            if plan.id in mine:
                outcomes[plan.id] = SceneOutcome(
                    id=plan.id, status=FAILED, date=plan.date, error=plan.error, attempts=0
                )
            continue
        record = None if force and plan.id in mine else load_done(plan.folder, plan.fingerprint)
        if record is not None:
            outcomes[plan.id] = _skipped(plan, record)
        elif plan.id in mine:
            log.info(
                "scene %s: computing (%s)",
                plan.id,
                "; ".join(why_not_done(plan.folder, plan.fingerprint)),
            )
            todo.append(plan)
    for plan in plans:  # other shards' scenes that are not done (yet)
        if plan.id not in outcomes and plan.id not in mine:
            outcomes[plan.id] = SceneOutcome(
                id=plan.id, status=PENDING, date=plan.date, attempts=-1
            )
    return outcomes, todo


def _merge(
    output: Path,
    ordered: list[SceneOutcome],
    *,
    dashboard: str | None,
    workers: int,
    started: float,
) -> BatchResult:
    """Write ``summary.csv`` and the merged ``outlines.gpkg`` over every done scene of the job."""
    summary = write_summary(output / "summary.csv", ordered)
    done = [
        (o.id, o.date, output / o.id / "outlines.gpkg")
        for o in ordered
        if o.status in (DONE, SKIPPED)
    ]
    outlines = output / "outlines.gpkg"
    polygons = merge_outlines(outlines, done)
    counts: dict[str, int] = {}
    for o in ordered:
        counts[o.status] = counts.get(o.status, 0) + 1
    return BatchResult(
        output=output,
        outcomes=ordered,
        summary=summary,
        outlines=outlines,
        polygons=polygons,
        dashboard=dashboard,
        workers=workers,
        seconds=time.perf_counter() - started,
        counts=counts,
    )


def _skipped(plan: ScenePlan, record: dict[str, Any]) -> SceneOutcome:
    return SceneOutcome(
        id=plan.id,
        status=SKIPPED,
        date=record.get("date") or plan.date,  # an acquired scene's date is the composite's
        attempts=0,
        worker=str(record.get("worker", "")),
        windows=record.get("windows"),
        windows_computed=record.get("windows_computed"),
        windows_skipped_no_valid_pixel=record.get("windows_skipped_no_valid_pixel"),
        windows_skipped_outside_roi=record.get("windows_skipped_outside_roi"),
        polygons=record.get("polygons"),
        glacier_area_km2=record.get("glacier_area_km2"),
        invalid_fraction=record.get("invalid_fraction"),
        not_mapped_fraction=record.get("not_mapped_fraction"),
        acquired_dates=record.get("acquired_dates"),
        cloud_in_aoi=record.get("cloud_in_aoi"),
        coverage=record.get("coverage"),
        peak_rss_mb=record.get("peak_rss_mb"),
        timings=dict(record.get("timings") or {}),
    )


def _run_here(
    todo: Iterable[ScenePlan], *, retries: int, on_outcome: Callable[[SceneOutcome], None]
) -> None:
    """Run scenes one after another in this process (``--shard``: a job-array task)."""
    for plan in todo:
        attempt = 1
        while True:
            try:
                outcome = run_scene(plan, attempt)
            except Exception as exc:
                if is_transient(exc) and attempt <= retries:
                    attempt += 1
                    continue
                outcome = _crashed(plan, exc, attempt, worker_name())
            on_outcome(outcome)
            break


def _crashed(plan: ScenePlan, exc: BaseException, attempts: int, worker: str) -> SceneOutcome:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return SceneOutcome(
        id=plan.id,
        status=FAILED,
        date=plan.date,
        error=f"{type(exc).__name__}: {text}".rstrip(": "),
        attempts=attempts,
        worker=worker,
    )


def _run_on_dask(
    todo: list[ScenePlan],
    *,
    scheduler: str,
    workers: int | None,
    retries: int,
    client: Any,
    announce: Callable[[str], None] | None,
    on_outcome: Callable[[SceneOutcome], None],
    scratch: Path,
) -> tuple[str | None, int]:
    import contextlib

    from glaviz.batch.cluster import Cluster, open_cluster

    if client is not None:
        context: Any = contextlib.nullcontext(
            Cluster(client, client.dashboard_link, len(client.nthreads()))
        )
    else:
        context = open_cluster(scheduler, workers=workers, scratch=scratch)
    with context as cluster:
        if announce is not None and cluster.dashboard:
            announce(f"Dask dashboard: {cluster.dashboard}")
        _submit_all(cluster.client, todo, retries=retries, on_outcome=on_outcome)
        return cluster.dashboard, cluster.workers


def _submit_all(
    client: Any,
    todo: list[ScenePlan],
    *,
    retries: int,
    on_outcome: Callable[[SceneOutcome], None],
) -> None:
    """Keep one scene per worker thread in flight; resubmit transient failures.

    Scenes are handed out as threads free up instead of all at once: a worker that dies then
    takes down only the scene it was running (the scheduler fails every task assigned to a dead
    worker), and a cluster that grows (adaptive, dask-jobqueue) is used as it grows.
    """
    from collections import deque

    from distributed import as_completed

    waiting: deque[tuple[ScenePlan, int]] = deque((plan, 1) for plan in todo)
    running: dict[Any, tuple[ScenePlan, int]] = {}
    queue = as_completed()

    def fill() -> None:
        capacity = max(1, sum(client.nthreads().values()))
        while waiting and len(running) < capacity:
            plan, attempt = waiting.popleft()
            # A fresh key per attempt: the scheduler remembers a failed key for a while.
            key = f"glaviz-scene-{plan.id}-attempt-{attempt}"
            future = client.submit(run_scene, plan, attempt, key=key, pure=False, retries=0)
            running[future] = (plan, attempt)
            queue.add(future)

    fill()
    for future in queue:
        plan, attempt = running.pop(future)
        try:
            outcome = future.result()
        except Exception as exc:
            if is_transient(exc) and attempt <= retries:
                log.warning("scene %s: %s on attempt %d; retrying", plan.id, exc, attempt)
                waiting.appendleft((plan, attempt + 1))
                outcome = None
            else:
                outcome = _crashed(plan, exc, attempt, _where(exc))
        finally:
            future.release()
        if outcome is not None:
            on_outcome(outcome)
        fill()


def _where(exc: BaseException) -> str:
    """The worker a task died on (KilledWorker says which), else unknown."""
    last = getattr(exc, "last_worker", None)
    return str(getattr(last, "name", None) or getattr(last, "address", "") or "")
