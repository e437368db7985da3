"""Benchmark ``glaviz change`` on two generated Sentinel-2-sized dates.

Writes two deploy-like folders (outlines.tif, confidence.tif, run.json) on a 10980 × 10980 grid
at 10 m: a few thousand glaciers of random size at the first date, and at the second the same
glaciers retreated (eroded by a few pixels, so some split or vanish), with a cloud over a
corner. The confidence is low along each outline, as a model's is. Then runs ``glaviz change``
on them as a subprocess under ``/usr/bin/time -v`` and reports wall time and peak RSS. Target
(issue 19): ≤ 3 min and ≤ 4 GB.

    python benchmarks/change.py [--size 10980] [--glaciers 3000] [--workdir DIR] [--seed 0]

``--docs-figure PNG`` instead draws docs/change.md's picture: a generated scene of glaviz.samples
whose glaciers retreat upwards over three dates (the ice below a rising elevation is lost), with a
cloud over part of the middle date.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
CRS = "EPSG:32632"
ORIGIN = (300000.0, 5200000.0)
PX = 10.0
DATES = ("2017-08-20", "2023-08-25")


def glaciers(size: int, count: int, seed: int) -> np.ndarray:
    """``count`` ice blobs (unions of a few discs) of 0.002 to about 3 km² on a bool grid."""
    rng = np.random.default_rng(seed)
    ice = np.zeros((size, size), dtype=bool)
    for _ in range(count):
        r0, c0 = rng.integers(80, size - 80, 2)
        for _ in range(rng.integers(1, 5)):
            radius = int(rng.uniform(3, 45))
            r = int(np.clip(r0 + rng.integers(-30, 31), radius, size - radius - 1))
            c = int(np.clip(c0 + rng.integers(-30, 31), radius, size - radius - 1))
            yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
            ice[r - radius : r + radius + 1, c - radius : c + radius + 1] |= (
                yy * yy + xx * xx <= radius * radius
            )
    return ice


def write_date(folder: Path, ice: np.ndarray, cloud: tuple[slice, slice] | None) -> None:
    """outlines.tif (0/1, 255 under the cloud), confidence.tif and a run.json."""
    folder.mkdir(parents=True, exist_ok=True)
    size = ice.shape[0]
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "crs": CRS,
        "transform": from_origin(*ORIGIN, PX, PX),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    band = ice.astype(np.uint8)
    if cloud is not None:
        band[cloud] = 255
    with rasterio.open(folder / "outlines.tif", "w", dtype="uint8", nodata=255, **profile) as dst:
        dst.write(band, 1)
    del band
    edge = ice ^ ndimage.binary_erosion(ice)
    with rasterio.open(folder / "confidence.tif", "w", dtype="float32", **profile) as dst:
        for r in range(0, size, 1024):
            conf = np.where(edge[r : r + 1024], 0.3, 0.95).astype(np.float32)
            dst.write(conf, 1, window=((r, min(r + 1024, size)), (0, size)))
    # As deploy records a calibrated run; deploy records no date, so --date gives it.
    (folder / "run.json").write_text(json.dumps({"settings": {"calibration": "generated"}}))


def timed(cmd: list[str]) -> tuple[float, float | None, str]:
    """Run ``cmd`` under /usr/bin/time -v: (wall s, peak RSS MB, stderr)."""
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"glaviz change failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return wall, (int(found.group(1)) / 1024 if found else None), proc.stderr


def docs_figure(target: Path, workdir: Path) -> None:
    """change.png of a generated retreat over three dates, copied to ``target``."""
    import shutil

    from glaviz.samples import make_scene

    scene = make_scene(workdir / "scene", size=(320, 320), seed=2, region="ALP")
    with rasterio.open(scene.truth) as src:
        truth, profile = src.read(1), src.profile
    with rasterio.open(scene.elevation) as src:
        elevation = src.read(1)
    ice = truth == 1
    dates = ("2015-08-20", "2019-08-24", "2023-08-25")
    argv = ["change"]
    for k, (date, share) in enumerate(zip(dates, (0.0, 0.12, 0.25), strict=True)):
        floor = np.quantile(elevation[ice], share) if share else -np.inf
        band = np.where(truth == 255, 255, ice & (elevation >= floor)).astype(np.uint8)
        if k == 1:
            band[200:260, 20:120] = 255  # a cloud: unobserved, not loss
        folder = workdir / f"d{k}"
        folder.mkdir(exist_ok=True)
        with rasterio.open(folder / "outlines.tif", "w", **{**profile, "nodata": 255}) as dst:
            dst.write(band, 1)
        argv += [str(folder), "--date", f"{folder}={date}"]
    out = workdir / "change"
    cli = "import sys; from glaviz.cli.app import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", cli, *argv, "-o", str(out), "--overwrite"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    shutil.copy(out / "change.png", target)
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--glaciers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--docs-figure", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="glaviz-change-bench-"))
    if args.docs_figure is not None:
        docs_figure(args.docs_figure.resolve(), work)
        return
    t = time.perf_counter()
    ice = glaciers(args.size, args.glaciers, args.seed)
    write_date(work / "t0", ice, None)
    later = ndimage.binary_erosion(ice, iterations=3)  # a 30 m retreat all round
    del ice
    corner = args.size // 5
    write_date(work / "t1", later, (slice(0, corner), slice(0, corner)))
    del later
    print(f"generated {args.size}² × 2 dates in {time.perf_counter() - t:.0f} s ({work})")
    out = work / "change"
    cli = "import sys; from glaviz.cli.app import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", cli, "-q", "change", str(work / "t0"), str(work / "t1")]
    cmd += ["--date", f"{work / 't0'}={DATES[0]}", "--date", f"{work / 't1'}={DATES[1]}"]
    cmd += ["-o", str(out), "--overwrite"]
    wall, rss, _ = timed(cmd)
    record = json.loads((out / "run.json").read_text())
    total = next(r for r in record["totals"] if r["level"] == "total")
    print(
        f"glaviz change: {wall:.1f} s wall, peak RSS {rss:.0f} MB; "
        f"{sum(record['matches'].values())} rows ({record['matches']}); "
        f"total change {total['change_km2']:.2f} km² of {total['area_t0_km2']:.2f} km²; "
        f"timings {json.dumps({k: round(v, 1) for k, v in record['timings'].items()})}"
    )


if __name__ == "__main__":
    main()
