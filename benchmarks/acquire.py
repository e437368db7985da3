"""Benchmark ``glaviz acquire`` on a full-size Sentinel-2 tile: wall time, peak memory, MB/s.

Generates one L1C granule once (lossless JPEG 2000 bands of ``--size`` pixels at 10 m — 10980,
a whole 110 km tile, by default — with its metadata and cloud mask, and a DEM tile), serves it
from a local range server (tests/range_server.py), and runs the acquisition engine in a child
process, twice:

- cold: an empty cache, so every band is fetched through ``/vsicurl/`` and decoded into the
  cache, then composited and written (optical, elevation, stack, quicklook, record);
- warm: the same AOI into a new folder, every file from the cache.

The AOI covers the whole granule. Peak memory is the child's maximum resident set size
(``/usr/bin/time -v`` when present, else ``getrusage`` of the children). MB/s is the size of
the granule's files (what a cold run fetches) over the run's wall time; the generated bands
compress far better than real ones (a smooth pattern), so Mpx/s of the output grid is printed
too, which does not depend on the files' size.

    python benchmarks/acquire.py [--size 10980] [--workdir DIR]
    python benchmarks/acquire.py --size 1830     # a quick check (a sixth of a tile per side)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.range_server import range_server  # noqa: E402
from tests.s2_granules import (  # noqa: E402
    DemSpec,
    GranuleSpec,
    flat_paths,
    footprint,
    utm_box,
    write_dem,
    write_files,
)

EPSG = 32632
#: The upper-left corner of tile 32TMS, whose lattice the granule keeps.
LEFT, TOP = 399960.0, 5300040.0


def granule_spec(size: int) -> GranuleSpec:
    return GranuleSpec(
        item_id="S2B_32TMS_20230815_0_L1C", tile="32TMS", epsg=EPSG, left=LEFT, top=TOP,
        size=size, sensed=datetime(2023, 8, 15, 10, 30), cloud=(0, 0, size // 4, size // 4),
    )  # fmt: skip


def generate(workdir: Path, size: int) -> Path:
    """Write the granule and DEM under ``workdir/bucket`` once (a marker says it is complete)."""
    bucket = workdir / "bucket"
    marker = bucket / "complete.json"
    if marker.exists() and json.loads(marker.read_text()).get("size") == size:
        return bucket
    shutil.rmtree(bucket, ignore_errors=True)
    started = time.perf_counter()
    print(f"generating a {size} × {size} px granule in {bucket} (once) …", flush=True)
    write_files(bucket, granule_spec(size), flat_paths())
    w, s, e, n = utm_box(EPSG, LEFT, TOP, 10 * size)
    dem = DemSpec("DEM", (w - 0.05, s - 0.05, e + 0.05, n + 0.05), coefficients=(0, 30, 0))
    write_dem(bucket / "dem.tif", dem)
    marker.write_text(json.dumps({"size": size}))
    print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)
    return bucket


def child(url: str, size: int, out: Path) -> None:
    """The measured run: the engine with the search answered by the served granule."""
    from glaviz import api
    from glaviz.acquire import search
    from glaviz.acquire.granule import OPTICAL_BANDS, DemTile, Granule
    from glaviz.config import AcquireConfig

    spec, paths = granule_spec(size), flat_paths()
    granule = Granule(
        item_id=spec.item_id, collection=spec.collection, level="l1c", tile=spec.tile,
        sensed=spec.sensed, platform="sentinel-2b", baseline=spec.baseline,
        scene_cloud_pct=5.0, footprint=footprint(spec), epsg=EPSG,
        bands={b: f"{url}/{paths[b]}" for b in OPTICAL_BANDS},
        metadata=f"{url}/{paths['metadata']}", cloud_mask=f"{url}/{paths['cloud_mask']}",
    )  # fmt: skip
    w, s, e, n = utm_box(EPSG, LEFT, TOP, 10 * size)
    dem = DemTile(item_id="DEM", href=f"{url}/dem.tif", product="GLO-30", footprint={})
    search.search_granules = lambda request, stac_url=None: [granule]  # type: ignore[assignment]
    search.search_dem = lambda bbox, stac_url=None: [dem]  # type: ignore[assignment]
    # Inside the granule by 50 m, so the grid (snapped outwards) stays on its pixels.
    inset = 50 / 111_000
    config = AcquireConfig(
        bbox=(w + 2 * inset, s + inset, e - 2 * inset, n - inset), dates="2023-08-01/2023-08-31",
        output=out, overwrite=True, allow_large=True,
    )  # fmt: skip
    result = api.acquire(config)
    print("RESULT " + json.dumps(result.to_json()), flush=True)


def measure(workdir: Path, url: str, size: int, label: str) -> dict[str, float]:
    """Run :func:`child` in its own process; wall time, peak RSS and the engine's timings."""
    out = workdir / f"out-{label}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", url, "--size", str(size), "--out", str(out)]
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if timer:
        cmd = [timer, "-v", *cmd]
    env = {**os.environ, "GLAVIZ_HOME": str(workdir / "home"), "NO_PROXY": "127.0.0.1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{label} run failed:\n{done.stdout}\n{done.stderr}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    peak_kb = int(match.group(1)) if match else resource.getrusage(
        resource.RUSAGE_CHILDREN
    ).ru_maxrss  # fmt: skip
    if not match and peak_kb == before:
        peak_kb = 0
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    return {"wall_s": wall, "peak_mb": peak_kb / 1024, **result["timings"],
            "width": result["counts"]["width"], "height": result["counts"]["height"],
            "fetched": result["counts"]["fetched"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="granule side in 10 m pixels")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size - args.size % 6
    if args.child:
        child(args.child, size, args.out)
        return
    workdir = args.workdir or Path(tempfile.gettempdir()) / f"glaviz-acquire-bench-{size}"
    workdir.mkdir(parents=True, exist_ok=True)
    bucket = generate(workdir, size)
    granule_mb = sum(p.stat().st_size for p in bucket.iterdir() if p.suffix != ".json") / 2**20
    shutil.rmtree(workdir / "home", ignore_errors=True)
    with range_server(bucket) as server:
        cold = measure(workdir, server.url, size, "cold")
        cold_bytes = server.total_bytes / 2**20
        server.reset_counts()
        warm = measure(workdir, server.url, size, "warm")
        warm_bytes = server.total_bytes / 2**20
    print(f"granule {size} × {size} px, files {granule_mb:.1f} MB; grid {cold['width']} px wide")
    for label, run, sent in (("cold", cold, cold_bytes), ("warm", warm, warm_bytes)):
        print(
            f"{label}: wall {run['wall_s']:.1f} s (engine {run['total_s']:.1f} s: search+fetch "
            f"{run['search_fetch_s']:.1f} s, write {run['write_s']:.1f} s), peak RSS "
            f"{run['peak_mb']:.0f} MB, {sent:.1f} MB served, {run['fetched']} file(s) fetched, "
            f"{granule_mb / run['wall_s']:.1f} MB/s of granule files, "
            f"{run['width'] * run['height'] / 1e6 / run['wall_s']:.2f} Mpx/s of the grid"
        )


if __name__ == "__main__":
    main()
