"""Benchmark ``glaviz batch``: 8 demo scenes on 2 workers × 1 thread vs 1 worker × 2 threads.

Both layouts run in one invocation on the same generated scenes (raw optical + elevation, so each
scene runs features and deploy), each on a fresh Dask LocalCluster with TensorFlow's intra-op
pool sized to the worker's share of the cores (1 thread per worker for 2 × 1, 2 for 1 × 2). Every
run uses ``--force``-like fresh output folders, so nothing is skipped. It reports wall time,
scenes/h, windows/s and each worker's peak RSS (from ``summary.csv``), and the peak RSS of one
``glaviz deploy`` of the same scene in its own process (``/usr/bin/time -v``) for comparison.

    python benchmarks/batch.py [--scenes 8] [--size 256] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from glaviz.batch import run_batch  # noqa: E402
from glaviz.samples import make_scene  # noqa: E402


def write_job(workdir: Path, scenes: list[Path], output: str) -> Path:
    lines = [f'output = "{output}"', "[deploy]", 'weights = "demo"', ""]
    for i, scene in enumerate(scenes):
        lines += [
            "[[scene]]",
            f'id = "scene-{i}"',
            f'optical = "{scene / "optical.tif"}"',
            f'elevation = "{scene / "elevation.tif"}"',
            "",
        ]
    job = workdir / f"{output}.toml"
    job.write_text("\n".join(lines))
    return job


def run_layout(job: Path, workers: int, threads: int) -> dict[str, float]:
    import dask
    from distributed import Client, LocalCluster

    env = {
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    started = time.perf_counter()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=":0",
            env=env,
        )
    try:
        with Client(cluster) as client:
            result = run_batch(job, client=client)
    finally:
        cluster.close()
    wall = time.perf_counter() - started
    assert result.counts == {"done": len(result.outcomes)}, result.counts
    with open(result.summary, newline="") as fh:
        rows = list(csv.DictReader(fh))
    peaks: dict[str, float] = {}
    for row in rows:
        peaks[row["worker"]] = max(peaks.get(row["worker"], 0.0), float(row["peak_rss_mb"]))
    windows = sum(int(r["windows"]) for r in rows)
    return {
        "wall_s": wall,
        "batch_s": result.seconds,
        "scenes_per_h": len(rows) / wall * 3600,
        "windows_per_s": windows / wall,
        "load_model_s_mean": sum(float(r["load_model_s"]) for r in rows) / len(rows),
        "peak_rss_mb_per_worker": peaks,
    }


def single_deploy_rss(workdir: Path, scene: Path) -> float:
    """Peak RSS (MiB) of features + deploy of one scene, each in its own glaviz process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cli = [sys.executable, "-c", "import sys; from glaviz.cli.app import main; sys.exit(main())"]
    stack = workdir / "single-stack.tif"
    subprocess.run(
        [*cli, "features", "-o", str(stack), "--optical", str(scene / "optical.tif"),
         "--elevation", str(scene / "elevation.tif"), "--overwrite"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cli, "deploy", str(stack), "--weights", "demo",
         "-o", str(workdir / "single-out"), "--overwrite"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glaviz-batch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scenes = [
        make_scene(workdir / f"raw{i}", size=(args.size, args.size), seed=i).directory
        for i in range(args.scenes)
    ]
    print(f"{args.scenes} scenes of {args.size}² px, demo model, {os.cpu_count()} cores")
    for workers, threads in ((2, 1), (1, 2)):
        job = write_job(workdir, scenes, f"out-{workers}x{threads}")
        figures = run_layout(job, workers, threads)
        print(f"{workers} worker(s) × {threads} thread(s): " + ", ".join(
            f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
        ))  # fmt: skip
    rss = single_deploy_rss(workdir, scenes[0])
    print(f"one glaviz deploy in its own process: peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
