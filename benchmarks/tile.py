"""Benchmark a whole Sentinel-2 tile: full grid, skip-empty, and skip-empty inside a region.

Generates (once per work folder, row band by row band, never the whole array in memory) a
``--size``² feature stack (default 10980², one Sentinel-2 tile at 10 m) in EPSG:32645 with:

- an orbit-edge wedge of no-data in the top-left corner, 30 % of the tile;
- scattered cloud blocks (optical no-data), about 4 % of the tile;
- glaciers covering about 5 % of the tile, in two massifs outside the wedge (glaciers cluster
  in mountains; a tile whose ice were spread evenly over it would need it all mapped), and a
  matching RGI-style reference inventory (``reference.gpkg``, layer ``glaciers``).

Then, for each case — ``full`` (every window), ``skip-empty`` (windows with no valid pixel left
out) and ``roi`` (skip-empty inside the reference glaciers grown by 2 km) — it runs the real
deploy with ``--model`` (``demo``: the built-in small model; ``published``: a published-size
GlaViTU with seeded random weights, for a GPU) in a fresh process per case and reports the
windows computed, wall time, the reader's wait, and the process's peak RSS.

It also measures the published-size model's seconds per window at patch 384 in float32 and
bfloat16 on this machine (``--published-windows`` windows each, at the batch size deploy's
activation budget chooses, in a fresh process per precision) and projects each case's model
time as seconds per window × the published-size windows the case computes, counted with the
same skip/region rule on the 384-pixel grid.

``--demo-limit N``: cases with more than N demo windows are measured on the stack's first rows
(full width, so the same memory per row) and their wall time projected by windows; the JSON
says for each figure whether it was measured or projected.

Targets (issue 22): with the region, windows and projected published-size time ≥ 4× below the
full grid; peak RSS ≤ 2 GB.

    python benchmarks/tile.py [--size 10980] [--quick] [--json | --jsonl] [--workdir DIR]
        [--model demo|published] [--precision float32 bfloat16] [--cases full skip-empty roi]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CRS = "EPSG:32645"
ORIGIN = (400000.0, 3300000.0)
RES = 10.0
BAND_ROWS = 256
WEDGE_FRACTION = 0.30
GLACIER_FRACTION = 0.05
#: Share of a massif's disc that its glaciers cover.
MASSIF_DENSITY = 0.40
#: Massif centres as fractions of the tile (row, column): outside the top-left wedge.
MASSIFS = ((0.72, 0.30), (0.30, 0.74))
ROI_BUFFER_M = 2000.0
CASES = ("full", "skip-empty", "roi")
PUBLISHED_PATCH = 384
QUICK_SIZE = 1500

# ----------------------------------------------------------------------------- the scene


def glaciers(size: int, seed: int = 22) -> list[tuple[float, float, float]]:
    """Glacier discs ``(row, col, radius)`` in pixels: a jittered lattice inside each massif, so
    that they never overlap, covering :data:`GLACIER_FRACTION` of the tile."""
    rng = np.random.default_rng(seed)
    spacing = max(20.0, 200.0 * size / 10980)
    massif_area = GLACIER_FRACTION * size * size / MASSIF_DENSITY / len(MASSIFS)
    radius = math.sqrt(massif_area / math.pi)
    discs = []
    for fr, fc in MASSIFS:
        cr, cc = fr * size, fc * size
        n = int(radius // spacing) + 1
        for i in range(-n, n + 1):
            for j in range(-n, n + 1):
                r, c = cr + i * spacing, cc + j * spacing
                if math.hypot(r - cr, c - cc) > radius:
                    continue
                g = spacing * rng.uniform(0.30, 0.45)
                slack = spacing / 2 - g
                discs.append((r + rng.uniform(-slack, slack), c + rng.uniform(-slack, slack), g))
    return discs


def clouds(size: int, seed: int = 7) -> list[tuple[int, int, int, int]]:
    """Cloud blocks ``(row, col, height, width)`` in pixels, about 4 % of the tile."""
    rng = np.random.default_rng(seed)
    scale = size / 10980
    blocks = []
    while sum(h * w for _, _, h, w in blocks) < 0.04 * size * size:
        h, w = (int(rng.uniform(150, 600) * scale) + 1 for _ in range(2))
        blocks.append((int(rng.integers(0, size - h)), int(rng.integers(0, size - w)), h, w))
    return blocks


def _band(size: int, start: int, n: int, discs: list, blocks: list) -> np.ndarray:
    """Stack bands (8, n, size) of rows ``start … start + n``: optical 6, elevation, slope."""
    rows = np.arange(start, start + n, dtype=np.float64)[:, None]
    cols = np.arange(size, dtype=np.float64)[None, :]
    ice = np.zeros((n, size), bool)
    for r, c, g in discs:
        if r + g < start or r - g >= start + n:
            continue
        c0, c1 = max(int(c - g), 0), min(int(c + g) + 2, size)
        ice[:, c0:c1] |= (rows - r) ** 2 + (cols[:, c0:c1] - c) ** 2 <= g * g
    relief = np.sin(rows / 700.0) * np.cos(cols / 900.0)
    optical = np.where(ice, 0.72, 0.16 + 0.05 * relief).astype(np.float32)
    out = np.empty((8, n, size), np.float32)
    for b in range(6):
        out[b] = optical * (1.0 - 0.04 * b)
    out[6] = (2500 + 800 * relief + 600 * ice).astype(np.float32)
    out[7] = (20 + 10 * relief - 8 * ice).astype(np.float32)
    nodata = rows + cols < math.sqrt(2 * WEDGE_FRACTION) * size  # the orbit-edge wedge
    for r, c, h, w in blocks:
        if r < start + n and r + h > start:
            nodata[max(r - start, 0) : min(r + h - start, n), c : c + w] = True
    out[:6, nodata] = np.nan
    return out


def make_stack(folder: Path, size: int) -> tuple[Path, Path]:
    """``stack.tif`` and ``reference.gpkg`` in ``folder`` (kept: reused by later runs)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from glaviz.published.groups import GROUP_STACK_BANDS

    stack, reference = folder / f"stack_{size}.tif", folder / f"reference_{size}.gpkg"
    discs, blocks = glaciers(size), clouds(size)
    if not stack.exists():
        profile = {
            "driver": "GTiff", "dtype": "float32", "width": size, "height": size, "count": 8,
            "crs": CRS, "transform": from_origin(*ORIGIN, RES, RES), "tiled": True,
            "blockxsize": 256, "blockysize": 256, "compress": "deflate", "predictor": 3,
            "nodata": float("nan"), "BIGTIFF": "IF_SAFER",
        }  # fmt: skip
        names = [*GROUP_STACK_BANDS["optical"], *GROUP_STACK_BANDS["dem"]]
        partial = stack.with_suffix(".partial.tif")
        with rasterio.open(partial, "w", **profile) as ds:
            for i, name in enumerate(names, start=1):
                ds.set_band_description(i, name)
            for start in range(0, size, BAND_ROWS):
                n = min(BAND_ROWS, size - start)
                ds.write(_band(size, start, n, discs, blocks), window=Window(0, start, size, n))
        partial.rename(stack)
    if not reference.exists():
        write_reference(reference, discs)
    return stack, reference


def write_reference(path: Path, discs: list[tuple[float, float, float]]) -> None:
    """The glaciers as an RGI-style inventory (``rgi_id``, ``area_km2``) in lon/lat."""
    import geopandas as gpd
    from shapely.geometry import Point

    x0, y0 = ORIGIN
    shapes = [
        Point(x0 + (c + 0.5) * RES, y0 - (r + 0.5) * RES).buffer(g * RES) for r, c, g in discs
    ]
    frame = gpd.GeoDataFrame(
        {
            "rgi_id": [f"RGI2000-v7.0-G-13-{i:05d}" for i in range(len(shapes))],
            "area_km2": [s.area / 1e6 for s in shapes],
        },
        geometry=shapes,
        crs=CRS,
    ).to_crs("EPSG:4326")
    frame.to_file(path, driver="GPKG", layer="glaciers")


# ----------------------------------------------------------------------------- counting windows


def window_counts(stack: Path, reference: Path, patch: int) -> dict[str, int]:
    """Windows each case computes on the ``patch`` grid, by the rule deploy applies."""
    from glaviz.config import DeployConfig
    from glaviz.engine.reader import inspect_stack
    from glaviz.engine.roi import RoiMask, RoiSource, load_roi
    from glaviz.engine.tiling import tile_grid

    info = inspect_stack(stack)
    grid = tile_grid(info.height, info.width, patch)
    validity = RoiMask(info.height, info.width, _packed_validity(stack), RoiSource(stack, "", 0))
    valid = validity.window_hits(grid)
    config = DeployConfig(stack=stack, weights="demo", roi_from_reference=reference)
    roi = load_roi(config, info)
    assert roi is not None
    allowed = roi.window_hits(grid)
    return {
        "full": grid.n_windows,
        "skip-empty": int(valid.sum()),
        "roi": int((valid & allowed).sum()),
        "roi_fraction_of_tile": roi.inside / (info.height * info.width),
    }


def _packed_validity(stack: Path) -> np.ndarray:
    """One bit per pixel: every band finite (the reader's validity rule, without NaN nodata)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(stack) as ds:
        packed = np.zeros((ds.height, (ds.width + 7) // 8), np.uint8)
        for start in range(0, ds.height, BAND_ROWS):
            n = min(BAND_ROWS, ds.height - start)
            data = ds.read(window=Window(0, start, ds.width, n))
            packed[start : start + n] = np.packbits(np.all(np.isfinite(data), axis=0), axis=1)
    return packed


# ----------------------------------------------------------------------------- running cases

_DEPLOY = """
import json, resource, sys, time
from pathlib import Path
from glaviz.config import DeployConfig
from glaviz.engine.deploy import deploy
args = json.loads(sys.argv[1])
skip = args.pop("skip_empty")
started = time.perf_counter()
result = deploy(DeployConfig(**args), skip_empty=skip)
wall = time.perf_counter() - started
print(json.dumps({"wall_s": wall, "counts": result.to_json()["counts"],
                  "timings": result.timings,
                  "batch_size": result.settings["batch_size_used"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_case(
    case: str, stack: Path, reference: Path, weights: str, precision: str, out: Path
) -> dict[str, Any]:
    """Deploy ``stack`` for ``case`` in a fresh process; its figures as a dict."""
    args: dict[str, Any] = {
        "stack": str(stack), "weights": weights, "output": str(out), "overwrite": True,
        "precision": precision, "skip_empty": case != "full",
    }  # fmt: skip
    if case == "roi":
        args["roi_from_reference"] = str(reference)
        args["roi_buffer"] = ROI_BUFFER_M
    proc = subprocess.run(
        [sys.executable, "-c", _DEPLOY, json.dumps(args)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"deploy ({case}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def crop(stack: Path, rows: int) -> Path:
    """The stack's first ``rows`` rows, full width, as a new stack beside it."""
    import rasterio
    from rasterio.windows import Window

    target = stack.with_name(f"{stack.stem}_top{rows}.tif")
    if target.exists():
        return target
    with rasterio.open(stack) as src:
        profile = {**src.profile, "height": rows}
        with rasterio.open(target, "w", **profile) as dst:
            dst.descriptions = src.descriptions
            for start in range(0, rows, BAND_ROWS):
                n = min(BAND_ROWS, rows - start)
                w = Window(0, start, src.width, n)
                dst.write(src.read(window=w), window=w)
    return target


def measure_case(
    case: str, files: tuple[Path, Path], weights: str, precision: str, work: Path, plan: dict
) -> dict[str, Any]:
    """One case, measured on the whole tile or (over ``--demo-limit``) on its top rows."""
    stack, reference = files
    windows = plan["windows"][case]
    limit = plan["limit"]
    if limit is None or windows <= limit or case == "roi":
        run = run_case(case, stack, reference, weights, precision, work / f"out_{case}")
        return {"case": case, "measured_on": "whole tile", **_figures(run), "projected": False}
    rows = plan["crop_rows"]
    part = crop(stack, rows)
    run = run_case(case, part, reference, weights, precision, work / f"out_{case}_top{rows}")
    figures = _figures(run)
    per_window = figures["wall_s"] / max(figures["windows_computed"], 1)
    return {
        "case": case,
        "measured_on": f"top {rows} rows (full width)",
        "measured": figures,
        "windows_computed": windows,
        "wall_s": per_window * windows,
        "peak_rss_mb": figures["peak_rss_mb"],
        "projected": True,
    }


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    counts, timings = run["counts"], run["timings"]
    return {
        "windows_computed": counts.get("windows_computed", counts["windows"]),
        "windows_grid": counts["windows"],
        "wall_s": run["wall_s"],
        "loop_s": timings["loop_s"],
        "model_s": timings["model_s"],
        "reader_wait_s": timings["wait_s"],
        "reader_wait_share": timings["wait_s"] / max(run["wall_s"], 1e-9),
        "peak_rss_mb": run["peak_rss_mb"],
        "batch_size": run["batch_size"],
        "pixels": {k: v for k, v in counts.items() if k.startswith("pixels_")},
    }


# ----------------------------------------------------------------------------- published size

_PUBLISHED = """
import json, sys, time
import numpy as np
from glaviz.engine.inference import BatchedModel, batch_size_for_budget
from glaviz.engine.loading import load_for_inference
bundle, precision, windows = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = load_for_inference(bundle, precision=precision)
batch = batch_size_for_budget(model.config)
runner = BatchedModel.for_model(model, batch_size=batch)
rng = np.random.default_rng(0)
p = model.config.patch_size
inputs = {g: rng.random((batch, p, p, n), dtype=np.float32)
          for g, n in model.config.feature_groups.items()}
runner.predict(inputs)  # compile and warm up
calls = max(1, -(-windows // batch))
started = time.perf_counter()
for _ in range(calls):
    runner.predict(inputs)
elapsed = time.perf_counter() - started
print(json.dumps({"s_per_window": elapsed / (calls * batch), "batch_size": batch,
                  "windows_timed": calls * batch}))
"""


def published_bundle(work: Path) -> Path:
    """A published-size GlaViTU (patch 384, optical + dem) with seeded random weights."""
    path = work / "published-size.glaviz"
    if not path.exists():
        code = (
            "import sys\nfrom pathlib import Path\n"
            "from glaviz.model.bundle import BundleMetadata, save_bundle\n"
            "from glaviz.model.glavitu import GlaViTUConfig, build_glavitu\n"
            "from glaviz.published.normalisation import NormalisationStats\n"
            "config = GlaViTUConfig.create(features=['optical', 'dem'])\n"
            "train, _ = build_glavitu(config)\n"
            "stats = NormalisationStats.published().to_dict()\n"
            "save_bundle(Path(sys.argv[1]), train,"
            " BundleMetadata(architecture=config, normalization=stats))\n"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True)
    return path


def time_published(bundle: Path, precision: str, windows: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _PUBLISHED, str(bundle), precision, str(windows)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"published-size timing ({precision}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def device() -> str:
    """The GPU that TensorFlow would use (from nvidia-smi), else the CPU and its cores."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                  if ln.startswith("model name")]  # fmt: skip
        name = models[0] if models else name
    return f"CPU {name}, {os.cpu_count()} cores"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SIZE}² smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--jsonl", action="store_true", help="print one JSON line per case")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--model", choices=("demo", "published"), default="demo")
    parser.add_argument("--precision", nargs="+", default=["float32"])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--published-windows", type=int, default=4)
    parser.add_argument("--no-projection", action="store_true", help="skip the 384 timing")
    parser.add_argument("--demo-limit", type=int, default=None)
    parser.add_argument("--crop-rows", type=int, default=1536)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    size = QUICK_SIZE if args.quick else args.size
    work = args.workdir or Path(tempfile.mkdtemp(prefix="glaviz-tile-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    files = make_stack(work, size)
    generate_s = time.perf_counter() - started
    bundle = published_bundle(work) if args.model == "published" or not args.no_projection else None
    weights = "demo" if args.model == "demo" else str(bundle)
    patch = 64 if args.model == "demo" else PUBLISHED_PATCH
    plan = {
        "windows": window_counts(*files, patch),
        "limit": args.demo_limit,
        "crop_rows": args.crop_rows,
    }
    published = window_counts(*files, PUBLISHED_PATCH)
    cases = []
    where = device()
    for precision in args.precision:
        for case in args.cases:
            row = measure_case(case, files, weights, precision, work, plan)
            row.update(model=args.model, precision=precision, size=size, device=where)
            cases.append(row)
            if args.jsonl:
                print(json.dumps(row), flush=True)
    report: dict[str, Any] = {
        "machine": where,
        "size": size,
        "generate_s": generate_s,
        "model": args.model,
        "roi_buffer_m": ROI_BUFFER_M,
        "roi_fraction_of_tile": plan["windows"]["roi_fraction_of_tile"],
        "windows": {k: plan["windows"][k] for k in args.cases},
        "cases": cases,
    }
    if not args.no_projection and bundle is not None:
        report["published_size"] = projection(bundle, published, args)
    report["reduction"] = reductions(report)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.jsonl:
        print_table(report)


def projection(bundle: Path, published: dict[str, Any], args: argparse.Namespace) -> dict:
    """Seconds per published-size window, measured, × each case's windows on the 384 grid."""
    timing = {p: time_published(bundle, p, args.published_windows) for p in ("float32", "bfloat16")}
    windows = {c: published[c] for c in CASES}
    return {
        "patch": PUBLISHED_PATCH,
        "what": "s_per_window measured here; model_s = s_per_window × windows (projected)",
        "timing": timing,
        "windows": windows,
        "model_s": {
            p: {c: t["s_per_window"] * n for c, n in windows.items()} for p, t in timing.items()
        },
    }


def reductions(report: dict[str, Any]) -> dict[str, Any]:
    """Full grid ÷ region: windows (demo grid and 384 grid) and projected published time."""
    out: dict[str, Any] = {}
    windows = report["windows"]
    if "full" in windows and "roi" in windows:
        out["demo_windows"] = windows["full"] / max(windows["roi"], 1)
    published = report.get("published_size")
    if published:
        w = published["windows"]
        out["published_windows"] = w["full"] / max(w["roi"], 1)
        for p, times in published["model_s"].items():
            out[f"published_time_{p}"] = times["full"] / max(times["roi"], 1e-9)
    peaks = [c["peak_rss_mb"] for c in report["cases"]]
    out["peak_rss_mb_max"] = max(peaks) if peaks else None
    out["targets_met"] = bool(
        out.get("published_windows", 0) >= 4
        and all(out.get(f"published_time_{p}", 0) >= 4 for p in ("float32", "bfloat16"))
        and (out["peak_rss_mb_max"] or 0) <= 2048
    )
    return out


def print_table(report: dict[str, Any]) -> None:
    print(f"tile {report['size']}², model {report['model']}")
    for c in report["cases"]:
        tag = " (projected)" if c["projected"] else ""
        print(
            f"  {c['case']:<10} {c['precision']:<8} {c['windows_computed']:>7} windows  "
            f"{c['wall_s']:8.1f} s{tag}  peak {c['peak_rss_mb']:.0f} MB"
        )
    published = report.get("published_size")
    if published:
        for p, times in published["model_s"].items():
            line = "  ".join(f"{c} {t:.0f} s" for c, t in times.items())
            print(f"  published-size {p}: {line}")
    print(f"  reductions: {json.dumps(report['reduction'])}")


if __name__ == "__main__":
    main()
