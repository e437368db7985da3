"""Benchmark and check ``glaviz inventory`` on generated glacier landscapes.

``evaluate``: DEM mode (Kienholz et al. 2013 flowsheds, default parameters) against the known
divides of a generated multi-glacier scene (tests/test_inventory_data.py: domes with valley
glaciers whose true divides are the ridges between valleys). No registry package ships a real
DEM with reference divides, so this is a generated DEM. Reports the area-weighted share of ice
pixels assigned to the same glacier as the reference after one-to-one matching (largest overlap
first), and the glacier count per complex against the reference's.

``scale``: a generated 10980 × 10980 outline mask at 10 m (a Sentinel-2 tile) with its DEM, run
through ``glaviz inventory`` as a subprocess under ``/usr/bin/time -v``; reports wall time and
peak RSS. Target (issue 13): ≤ 5 min and ≤ 4 GB.

    python benchmarks/inventory.py evaluate [--size 1500] [--px 20] [--seed 7]
    python benchmarks/inventory.py scale [--size 10980] [--method dem] [--workdir DIR]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_inventory_data import _domes, dome_rows  # noqa: E402

CRS = "EPSG:32632"
ORIGIN = (400000.0, 5300000.0)
BLOCK = 512


def write_scene(
    workdir: Path, *, size: int, px: float, spacing: int, seed: int, patches: int = 0
) -> tuple[Path, Path, Path]:
    """outlines.tif, dem.tif and truth.tif (true glacier labels), written in row blocks."""
    per_row = size // spacing + (size % spacing > 0)
    domes = _domes(per_row * per_row, spacing, px, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    # Small separate ice patches: most real complexes are small single glaciers.
    pr = rng.integers(0, size, patches)
    pc = rng.integers(0, size, patches)
    prad = rng.uniform(2, 12, patches)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "crs": CRS,
        "transform": from_origin(*ORIGIN, px, px),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    paths = (workdir / "outlines.tif", workdir / "dem.tif", workdir / "truth.tif")
    with (
        rasterio.open(paths[0], "w", dtype="uint8", nodata=255, **profile) as mask_out,
        rasterio.open(paths[1], "w", dtype="float32", **profile) as dem_out,
        rasterio.open(paths[2], "w", dtype="int32", nodata=0, **profile) as truth_out,
    ):
        for r0 in range(0, size, BLOCK):
            rows = slice(r0, min(r0 + BLOCK, size))
            labels, dem = dome_rows(rows, size=size, spacing=spacing, px=px, domes=domes)
            sel = (pr + prad >= rows.start) & (pr - prad < rows.stop)
            yy, xx = np.mgrid[rows, 0:size]
            for r, c, rad in zip(pr[sel], pc[sel], prad[sel], strict=True):
                lo, hi = max(int(c - rad) - 1, 0), min(int(c + rad) + 2, size)
                disc = (yy[:, lo:hi] - r) ** 2 + (xx[:, lo:hi] - c) ** 2 <= rad**2
                labels[:, lo:hi][disc & (labels[:, lo:hi] == 0)] = -1
            window = rasterio.windows.Window(0, r0, size, rows.stop - r0)
            mask_out.write((labels != 0).astype(np.uint8), 1, window=window)
            dem_out.write(dem, 1, window=window)
            truth_out.write(np.maximum(labels, 0), 1, window=window)
    return paths


def _glaviz(args: list[str]) -> tuple[float, float | None, str]:
    """Run glaviz under /usr/bin/time -v; (wall s, peak RSS MB or None, stderr)."""
    cmd = [sys.executable, "-m", "glaviz.cli.app", *args]
    cmd = [sys.executable, "-c", "from glaviz.cli.app import run; run()", *args]
    timer = Path("/usr/bin/time")
    if timer.exists():
        cmd = [str(timer), "-v", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"glaviz failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return wall, (int(match.group(1)) / 1024 if match else None), proc.stdout + proc.stderr


def evaluate(args: argparse.Namespace) -> dict[str, object]:
    import geopandas as gpd
    from rasterio import features
    from scipy import ndimage

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="glaviz-inventory-eval-"))
    workdir.mkdir(parents=True, exist_ok=True)
    outlines, dem, truth = write_scene(
        workdir, size=args.size, px=args.px, spacing=args.spacing, seed=args.seed
    )
    if args.noise_m > 0:
        # Smooth random relief (about 200 m wavelength) on top of the ideal valleys.
        from scipy import ndimage as ndi

        with rasterio.open(dem, "r+") as dst:
            z = dst.read(1)
            noise = ndi.gaussian_filter(
                np.random.default_rng(args.seed + 2).normal(size=z.shape), 100.0 / args.px
            )
            dst.write((z + args.noise_m * noise / noise.std()).astype(np.float32), 1)
    out = workdir / "glaciers.gpkg"
    wall, rss, _ = _glaviz(
        [
            "inventory",
            str(outlines),
            "--dem",
            str(dem),
            "--method",
            "dem",
            "-o",
            str(out),
            "--overwrite",
        ]
    )
    with rasterio.open(truth) as src:
        ref = src.read(1)
        transform = src.transform
    glaciers = gpd.read_file(out, layer="glaciers")
    ours = features.rasterize(
        zip(glaciers.geometry, glaciers.glaviz_id, strict=True),
        out_shape=ref.shape,
        transform=transform,
        dtype="int32",
    )
    ice = ref > 0
    # One-to-one matching, largest overlap first.
    pairs, counts = np.unique(ours[ice].astype(np.int64) * (1 << 32) + ref[ice], return_counts=True)
    order = np.argsort(-counts)
    used_o, used_r, matched = set(), set(), 0
    for k in order:
        o, r = int(pairs[k] >> 32), int(pairs[k] & 0xFFFFFFFF)
        if o in used_o or r in used_r:
            continue
        used_o.add(o)
        used_r.add(r)
        matched += int(counts[k])
    share = matched / int(ice.sum())
    complexes, n = ndimage.label(ice, structure=ndimage.generate_binary_structure(2, 1))
    ref_count = np.array(
        [len(np.unique(ref[complexes == i])) for i in range(1, n + 1)], dtype=np.int64
    )
    our_count = np.array(
        [len(np.unique(ours[(complexes == i) & (ours > 0)])) for i in range(1, n + 1)],
        dtype=np.int64,
    )
    result = {
        "scene": f"{args.size} x {args.size} px at {args.px} m, seed {args.seed}, "
        f"noise {args.noise_m} m",
        "complexes": n,
        "reference_glaciers": int(ref_count.sum()),
        "dem_mode_glaciers": int(our_count.sum()),
        "same_glacier_share": round(share, 4),
        "complexes_with_equal_count": int((ref_count == our_count).sum()),
        "count_per_complex": [
            {"reference": int(a), "dem": int(b)} for a, b in zip(ref_count, our_count, strict=True)
        ],
        "wall_s": round(wall, 1),
        "peak_rss_mb": rss,
    }
    print(json.dumps(result, indent=2))
    return result


def _truth_polygons(truth: Path) -> Path:
    """The true glaciers as a reference inventory (``rgi_id`` = their label)."""
    import geopandas as gpd
    from rasterio import features
    from shapely.geometry import shape

    with rasterio.open(truth) as src:
        labels = src.read(1)
        transform, crs = src.transform, src.crs
    geoms, ids = [], []
    for geom, value in features.shapes(labels, mask=labels > 0, transform=transform):
        geoms.append(shape(geom))
        ids.append(f"T{int(value)}")
    frame = gpd.GeoDataFrame({"rgi_id": ids}, geometry=geoms, crs=crs).dissolve("rgi_id")
    path = truth.with_name("reference.gpkg")
    frame.reset_index().to_file(path)
    return path


def scale(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="glaviz-inventory-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    outlines, dem = workdir / "outlines.tif", workdir / "dem.tif"
    if not (args.reuse and outlines.exists() and dem.exists()):
        write_scene(
            workdir,
            size=args.size,
            px=10.0,
            spacing=args.spacing,
            seed=args.seed,
            patches=args.patches,
        )
    extra: list[str] = []
    if args.method != "dem":
        extra = ["--reference", str(_truth_polygons(workdir / "truth.tif"))]
    generated = time.perf_counter() - t0
    out = workdir / "glaciers.gpkg"
    command = ["inventory", str(outlines), "--dem", str(dem), "--method", args.method]
    wall, rss, text = _glaviz([*command, "-o", str(out), "--overwrite", *extra])
    record = json.loads((workdir / "glaciers.run.json").read_text())
    result = {
        "size": args.size,
        "generate_s": round(generated, 1),
        "wall_s": round(wall, 1),
        "peak_rss_mb": rss,
        "complexes": record["complexes"],
        "glaciers": record["glaciers"],
        "methods": record["methods"],
        "timings": record["timings"],
        "summary": text.strip().splitlines()[0] if text.strip() else "",
    }
    print(json.dumps(result, indent=2))
    return result


def figure(args: argparse.Namespace) -> None:
    """docs/inventory-split.png: one complex split by the Kienholz method, step by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from scipy import ndimage

    from glaviz.inventory.flowsheds import KienholzParams, kienholz_split
    from tests.test_inventory_data import dome_scene

    px = 20.0
    labels, dem, _ = dome_scene(size=300, px=px, origin=ORIGIN, seed=args.seed, spacing=300)
    mask = labels > 0
    params = KienholzParams.from_config()
    split = kienholz_split(mask, dem.astype(np.float64), xres=px, yres=px, params=params)
    colours = ListedColormap(
        ["#ffffff", "#8ecae6", "#ffb703", "#219ebc", "#fb8500", "#90be6d", "#b5838d", "#f28482"]
    )

    def edges(lab: np.ndarray) -> np.ndarray:
        grown = ndimage.grey_dilation(lab, size=3) != ndimage.grey_erosion(lab, size=3)
        return np.where(grown & (lab > 0), 1.0, np.nan)

    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.6), dpi=90)
    for ax, lab, title in (
        (axes[0], split.flowsheds, f"{int(split.flowsheds.max())} flowsheds and pour points"),
        (axes[1], split.labels, f"{int(split.labels.max())} glaciers after merging"),
    ):
        ax.contour(dem, levels=np.arange(2000, 4500, 50), colors="#999999", linewidths=0.3)
        ax.imshow(np.where(lab > 0, lab % 7 + 1, 0), cmap=colours, vmin=0, vmax=7, alpha=0.75)
        ax.imshow(edges(lab), cmap=ListedColormap(["#023047"]), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for r, c, _acc, radius in split.pour_points:
        axes[0].plot(c, r, "o", ms=3, color="#d00000")
        axes[0].add_patch(
            plt.Circle((c, r), radius / px, fill=False, color="#d00000", lw=0.6, ls="--")
        )
    axes[0].set_xlim(0, mask.shape[1])
    axes[0].set_ylim(mask.shape[0], 0)
    fig.tight_layout()
    target = ROOT / "docs" / "inventory-split.png"
    fig.savefig(target, dpi=90)
    plt.close(fig)
    # A palette of 48 colours keeps the committed picture small.
    from PIL import Image

    Image.open(target).convert("RGB").quantize(48).save(target, optimize=True)
    print(target, target.stat().st_size, "bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ev = sub.add_parser("evaluate", help="DEM mode against known divides")
    ev.add_argument("--size", type=int, default=1500)
    ev.add_argument("--px", type=float, default=20.0)
    ev.add_argument("--spacing", type=int, default=300)
    ev.add_argument("--seed", type=int, default=7)
    ev.add_argument("--noise-m", type=float, default=0.0, help="smooth relief added (std, m)")
    ev.add_argument("--workdir", type=Path, default=None)
    sc = sub.add_parser("scale", help="10980 x 10980 wall time and peak memory")
    sc.add_argument("--size", type=int, default=10980)
    sc.add_argument("--spacing", type=int, default=500)
    sc.add_argument("--patches", type=int, default=3000)
    sc.add_argument("--seed", type=int, default=11)
    sc.add_argument("--method", default="dem")
    sc.add_argument("--workdir", type=Path, default=None)
    sc.add_argument("--reuse", action="store_true", help="keep a scene already in --workdir")
    fg = sub.add_parser("figure", help="draw docs/inventory-split.png")
    fg.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    {"evaluate": evaluate, "scale": scale, "figure": figure}[args.what](args)


if __name__ == "__main__":
    main()
