"""The Dask cluster a batch runs on: an embedded LocalCluster, or an existing scheduler.

The embedded cluster has one *process* per worker with one thread each: TensorFlow holds the GIL
little, but a worker process owns its device and its thread pools, and a crash (segfault, OOM
kill) takes down one worker, which the nanny restarts, not the batch. With GPUs there is one
worker per GPU and each sees only its own (``CUDA_VISIBLE_DEVICES`` set before TensorFlow starts);
without, a quarter of the cores become workers and TensorFlow's pools share the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from glaviz.errors import ConfigError, InputError
from glaviz.util.leftovers import process_folder

log = logging.getLogger(__name__)

#: How long to wait for an existing scheduler to answer.
CONNECT_TIMEOUT_S = 15

#: Cores per worker on CPU-only machines: one GlaViTU deploy uses a few intra-op threads well.
CORES_PER_CPU_WORKER = 4


def visible_gpus() -> list[str]:
    """GPU ids this process may use, without importing TensorFlow.

    ``CUDA_VISIBLE_DEVICES`` when set (a scheduler such as SLURM sets it to the allocation), else
    the GPUs ``nvidia-smi`` lists, else none.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [d.strip() for d in env.split(",") if d.strip()]
        return [] if ids in ([], ["-1"]) else ids
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


@dataclass(frozen=True)
class Layout:
    """How many workers, TensorFlow threads each, and the GPU each one gets."""

    workers: int
    threads: int
    gpus: tuple[str, ...]


def local_layout(workers: int | None = None, *, cores: int | None = None) -> Layout:
    """Workers = GPUs when there are GPUs, else cores ÷ 4 (at least 1); threads share the cores."""
    cores = cores or len(os.sched_getaffinity(0))
    gpus = tuple(visible_gpus())
    if workers is None:
        workers = len(gpus) if gpus else max(1, cores // CORES_PER_CPU_WORKER)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    return Layout(workers=workers, threads=max(1, cores // workers), gpus=gpus)


class PinDevice(WorkerPlugin):
    """Worker plugin: give worker ``i`` GPU ``gpus[i % n]`` and size TensorFlow's pools.

    Runs in the worker process when it starts (and again in a worker the nanny restarted), before
    any task imports TensorFlow, which reads ``CUDA_VISIBLE_DEVICES`` once at start-up.
    """

    name = "glaviz-pin-device"

    def __init__(self, gpus: tuple[str, ...], threads: int) -> None:
        self.gpus = gpus
        self.threads = threads

    def setup(self, worker: Any) -> None:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(self.threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1" if self.threads < 4 else "2"
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        if self.gpus:
            index = _worker_index(worker.name)
            os.environ["CUDA_VISIBLE_DEVICES"] = self.gpus[index % len(self.gpus)]


def _worker_index(name: Any) -> int:
    try:
        return int(name)
    except (TypeError, ValueError):
        import zlib

        return zlib.crc32(str(name).encode())


@dataclass
class Cluster:
    """A connected client, the dashboard address, and how many workers there are."""

    client: Any
    dashboard: str | None
    workers: int


@contextlib.contextmanager
def open_cluster(
    scheduler: str, *, workers: int | None = None, scratch: Path | None = None
) -> Iterator[Cluster]:
    """Start the embedded LocalCluster (``"local"``) or connect to ``tcp://HOST:PORT``.

    ``scratch``: where the local workers keep their spill and lock files, in a hidden folder
    of this run removed at the end (Dask's default, ``./dask-scratch-space``, outlived every
    batch); by default the system temp folder.
    """
    import dask
    from distributed import Client, LocalCluster

    # A worker that dies while running a scene fails that task at once (KilledWorker), so the
    # batch's own retry counter sees every attempt; the scheduler's default would silently rerun
    # it three times first.
    settings = {"distributed.scheduler.allowed-failures": 0}
    if scheduler == "local":
        layout = local_layout(workers)
        env = {
            "TF_NUM_INTRAOP_THREADS": str(layout.threads),
            "OMP_NUM_THREADS": str(layout.threads),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        }
        with process_folder(scratch or Path(tempfile.gettempdir()), "dask-scratch") as local:
            # Workers' temp files (autograph's generated sources among them) go there too.
            env["TMPDIR"] = str(local)
            with dask.config.set({**settings, "temporary-directory": str(local)}):
                cluster = LocalCluster(
                    n_workers=layout.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                    env=env,
                    local_directory=str(local),
                )
            try:
                with Client(cluster) as client:
                    client.register_plugin(PinDevice(layout.gpus, layout.threads))
                    yield Cluster(client, cluster.dashboard_link, layout.workers)
            finally:
                cluster.close()
        return
    if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise ConfigError(
            f"--scheduler {scheduler!r}: use 'local' or an address such as tcp://10.0.0.5:8786 "
            "(printed by `dask scheduler`)"
        )
    if workers is not None:
        raise ConfigError(
            "--workers only sizes the embedded local cluster; with --scheduler the cluster's "
            "own workers run the scenes"
        )
    with dask.config.set(settings):
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"cannot connect to the Dask scheduler at {scheduler} ({exc}); start one with "
                "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`"
            ) from None
    try:
        n = len(client.nthreads())
        yield Cluster(client, client.dashboard_link, n)
    finally:
        client.close()
