"""Benchmark ``glaviz features``: wall time and peak memory on generated 3000² and 6000² scenes.

Each scene has a 6-band optical raster (float32, 10 m, EPSG:32632) and a DEM on another CRS and
resolution (EPSG:4326, 1 arcsecond), so the run exercises slope on a geographic grid and
warping. ``glaviz features`` runs as a subprocess under ``/usr/bin/time -v`` (Debian package
``time``), which reports the peak resident set size; without it, the peak of the child process
is read from ``getrusage``.

Targets (issue 3): peak RSS under 1.5 GB, and less than 25 % growth from 3000² to 6000².

    python benchmarks/features.py [--sizes 3000 6000] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.windows import Window

CRS = "EPSG:32632"
ORIGIN = (400_000.0, 5_120_000.0)
RES = 10.0
DEM_RES = 1 / 3600
BLOCK_ROWS = 512
PROFILE = {
    "driver": "GTiff",
    "dtype": "float32",
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
    "zlevel": 1,
    "predictor": 3,
    "bigtiff": "if_safer",
}


def _terrain(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth mountains in metres from map coordinates (metres): realistic slopes, compressible."""
    return (
        2500.0
        + 900.0 * np.sin(x / 3100.0) * np.cos(y / 2700.0)
        + 300.0 * np.sin(x / 700.0 + 1.0) * np.sin(y / 900.0)
    )


def make_scene(folder: Path, size: int) -> tuple[Path, Path]:
    """Write ``optical.tif`` (size², 6 bands) and ``dem.tif`` (lon/lat) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    transform = from_origin(*ORIGIN, RES, RES)
    optical = folder / "optical.tif"
    rng = np.random.default_rng(size)
    with rasterio.open(
        optical, "w", width=size, height=size, count=6, crs=CRS, transform=transform, **PROFILE
    ) as dst:
        cols = np.arange(size)
        for row in range(0, size, BLOCK_ROWS):
            h = min(BLOCK_ROWS, size - row)
            y = ORIGIN[1] - (row + np.arange(h)[:, None] + 0.5) * RES
            x = ORIGIN[0] + (cols[None, :] + 0.5) * RES
            base = 0.3 + 0.2 * np.sin(x / 1500.0) * np.cos(y / 1300.0)
            bands = np.stack([base * (1 + 0.1 * b) for b in range(6)]).astype(np.float32)
            bands += rng.normal(0, 0.01, bands.shape).astype(np.float32)
            dst.write(bands, window=Window(0, row, size, h))

    # The DEM: geographic, about 30 m x 21 m pixels, with a margin around the scene.
    to_geo = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    corners_x = [ORIGIN[0] - 500, ORIGIN[0] + size * RES + 500]
    corners_y = [ORIGIN[1] + 500, ORIGIN[1] - size * RES - 500]
    lon, lat = to_geo.transform(
        [corners_x[0], corners_x[1], corners_x[0], corners_x[1]],
        [corners_y[0], corners_y[0], corners_y[1], corners_y[1]],
    )
    west, east, south, north = min(lon), max(lon), min(lat), max(lat)
    width = math.ceil((east - west) / DEM_RES)
    height = math.ceil((north - south) / DEM_RES)
    dem_transform = from_origin(west, north, DEM_RES, DEM_RES)
    to_map = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    dem = folder / "dem.tif"
    with rasterio.open(
        dem, "w", width=width, height=height, count=1, crs="EPSG:4326",
        transform=dem_transform, nodata=-9999.0, **PROFILE,
    ) as dst:  # fmt: skip
        lons = west + (np.arange(width) + 0.5) * DEM_RES
        for row in range(0, height, BLOCK_ROWS):
            h = min(BLOCK_ROWS, height - row)
            lats = north - (row + np.arange(h) + 0.5) * DEM_RES
            gx, gy = np.meshgrid(lons, lats)
            x, y = to_map.transform(gx, gy)
            dst.write(_terrain(x, y).astype(np.float32)[None], window=Window(0, row, width, h))
    return optical, dem


def _glaviz() -> list[str]:
    exe = Path(sys.executable).with_name("glaviz")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from glaviz.cli.app import run; run()"]


def measure(args: list[str]) -> tuple[float, float]:
    """Run ``args``; return (wall seconds, peak RSS in MB) of that process."""
    time_bin = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    start = time.perf_counter()
    if time_bin:
        proc = subprocess.run([time_bin, "-v", *args], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"glaviz features failed:\n{proc.stderr}")
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        assert match, proc.stderr
        return wall, int(match.group(1)) / 1024
    # Fallback: a fresh interpreter whose only child is glaviz, so RUSAGE_CHILDREN is glaviz's.
    code = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"glaviz features failed:\n{proc.stderr}")
    return wall, int(proc.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 6000])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated scenes")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glaviz-bench-"))
    results: dict[int, tuple[float, float]] = {}
    try:
        for size in args.sizes:
            folder = workdir / f"scene_{size}"
            t0 = time.perf_counter()
            optical, dem = make_scene(folder, size)
            print(f"{size}²: scene generated in {time.perf_counter() - t0:.1f} s", flush=True)
            out = folder / "stack.tif"
            cmd = [*_glaviz(), "-q", "features", "-o", str(out), "--optical", str(optical)]
            cmd += ["--elevation", str(dem), "--overwrite"]
            wall, rss = measure(cmd)
            results[size] = (wall, rss)
            print(f"{size}²: wall {wall:.1f} s, peak RSS {rss:.0f} MB", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print("\nsize      wall [s]   peak RSS [MB]")
    for size, (wall, rss) in results.items():
        print(f"{size:>5}²  {wall:9.1f}  {rss:14.0f}")
    sizes = sorted(results)
    peak = max(rss for _, rss in results.values())
    ok = peak < 1536
    print(f"peak RSS {peak:.0f} MB (target < 1536 MB): {'ok' if ok else 'FAIL'}")
    if len(sizes) >= 2:
        growth = results[sizes[-1]][1] / results[sizes[0]][1] - 1
        print(
            f"RSS growth {sizes[0]}² → {sizes[-1]}²: {100 * growth:+.1f} % (target < 25 %): "
            f"{'ok' if growth < 0.25 else 'FAIL'}"
        )
        ok = ok and growth < 0.25
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
