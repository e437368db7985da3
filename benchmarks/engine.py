"""Benchmark the deploy engine alone: reader, window loop, blend and writer, no model compute.

Generates a ``--height`` × ``--width`` scene (default 600 × 10980, one Sentinel-2 tile wide),
builds its stack with ``glaviz features`` (timed), then runs the real :func:`glaviz.engine.deploy`
on it with the model replaced by a constant predictor (every window gets the same softmax), on
a patch-384 model (171 windows at the default size). What is left is the engine's own cost:
reading, decoding and normalising the stack, batching, blending, calibration, writing the COGs,
polygons, quicklook and run record.

``--demo`` also times ``glaviz deploy STACK --weights demo`` (the built-in small model, real
compute) against the ``glaviz features`` call, as a new user would run them.

Targets (issue 10, 2 cores): ≥ 100 windows/s through the engine; the demo deploy within 6× the
features wall time.

    python benchmarks/engine.py [--json] [--demo] [--height 600] [--width 10980] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features import _glaviz, measure

CRS = "EPSG:32645"
ORIGIN = (400000.0, 3300000.0)
RES = 10.0
PROFILE = {"driver": "GTiff", "dtype": "float32", "tiled": True, "blockxsize": 256,
           "blockysize": 256, "compress": "deflate", "nodata": float("nan")}  # fmt: skip


def make_scene(folder: Path, height: int, width: int) -> tuple[Path, Path]:
    """``optical.tif`` (6 bands, TOA reflectance) and ``dem.tif`` on the same UTM grid."""
    folder.mkdir(parents=True, exist_ok=True)
    transform = from_origin(*ORIGIN, RES, RES)
    rng = np.random.default_rng(height * width)
    optical, dem = folder / "optical.tif", folder / "dem.tif"
    geo = {"width": width, "height": height, "crs": CRS, "transform": transform, **PROFILE}
    with (
        rasterio.open(optical, "w", count=6, **geo) as o,
        rasterio.open(dem, "w", count=1, **geo) as d,
    ):
        x = ORIGIN[0] + (np.arange(width)[None, :] + 0.5) * RES
        for row in range(0, height, 256):
            h = min(256, height - row)
            y = ORIGIN[1] - (row + np.arange(h)[:, None] + 0.5) * RES
            base = 0.3 + 0.25 * np.sin(x / 1500.0) * np.cos(y / 1300.0)
            bands = np.stack([base * (1 + 0.1 * b) for b in range(6)]).astype(np.float32)
            bands += rng.normal(0, 0.01, bands.shape).astype(np.float32)
            o.write(bands, window=Window(0, row, width, h))
            z = 4000 + 800 * np.sin(x / 4000.0) * np.cos(y / 3500.0)
            d.write(z.astype(np.float32)[None], window=Window(0, row, width, h))
    return optical, dem


def engine_model(workdir: Path) -> Path:
    """A small patch-384 bundle: the grid of the published model, cheap to build."""
    path = workdir / "patch384.glaviz"
    if not path.exists():
        from glaviz.model.bundle import BundleMetadata, save_bundle
        from glaviz.model.glavitu import GlaViTUConfig, build_glavitu
        from glaviz.published.normalisation import NormalisationStats

        config = GlaViTUConfig.create(features=["optical", "dem"], preset="tiny", patch_size=384)
        train, _ = build_glavitu(config)
        meta = BundleMetadata(
            architecture=config, normalization=NormalisationStats.published().to_dict()
        )
        save_bundle(path, train, meta)
    return path


def constant_model() -> None:
    """Replace the model call by a constant softmax (works on this and older engines)."""
    try:
        from glaviz.engine.inference import BatchedModel as Runner
    except ImportError:  # before the engine stages (commit 3392379)
        from glaviz.engine.predictor import Predictor as Runner

    cache: dict[tuple[int, ...], np.ndarray] = {}

    def predict(self, inputs):
        first = inputs[next(iter(inputs))]
        n, patch = len(first), first[0].shape[0]
        key = (n, patch)
        if key not in cache:
            cache[key] = np.broadcast_to(np.array([0.3, 0.7], np.float32), (n, patch, patch, 2))
        return cache[key]

    Runner.predict = predict


def run_engine(stack: Path, workdir: Path) -> dict:
    from glaviz.config import DeployConfig
    from glaviz.engine.deploy import deploy

    constant_model()
    weights = engine_model(workdir)
    out = workdir / "engine-out"
    t, cpu = time.perf_counter(), time.process_time()
    result = deploy(DeployConfig(stack=stack, weights=str(weights), output=out, overwrite=True))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    timings = result.timings
    return {
        "windows": result.windows,
        "windows_per_s": result.windows / timings["loop_s"],
        "wall_s": wall,
        "loop_s": timings["loop_s"],
        # CPU seconds of the whole deploy (all threads): what a busy shared machine cannot hide.
        "cpu_s": cpu,
        "timings": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=10980)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--demo", action="store_true", help="also time deploy --weights demo")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glaviz-engine-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = workdir / "stack.tif"
    report: dict = {"height": args.height, "width": args.width}
    if not stack.exists():
        optical, dem = make_scene(workdir, args.height, args.width)
        cmd = [*_glaviz(), "-q", "features", "-o", str(stack)]
        wall, rss = measure([*cmd, "--optical", str(optical), "--elevation", str(dem)])
        report["features_wall_s"], report["features_peak_rss_mb"] = wall, rss
    report.update(run_engine(stack, workdir))
    if args.demo:
        out = workdir / "demo-out"
        cmd = [*_glaviz(), "-q", "deploy", str(stack), "--weights", "demo", "-o", str(out)]
        wall, rss = measure([*cmd, "--overwrite"])
        report["demo_deploy_wall_s"], report["demo_deploy_peak_rss_mb"] = wall, rss
        if "features_wall_s" in report:
            report["demo_over_features"] = wall / report["features_wall_s"]
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if key != "timings":
                print(
                    f"{key:>24}: {value:.3f}" if isinstance(value, float) else f"{key:>24}: {value}"
                )
        print("timings:", json.dumps({k: round(v, 3) for k, v in report["timings"].items()}))


if __name__ == "__main__":
    main()
