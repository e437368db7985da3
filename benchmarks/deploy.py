"""Benchmark ``glaviz deploy`` with the published-size model on generated 1500² and 3000² scenes.

For each size it builds a stack with ``glaviz features`` (not timed), then runs ``glaviz deploy``
as a subprocess and reports wall time, windows/s, the share of the processing loop spent in the
model, and peak RSS (``/usr/bin/time -v``, else ``getrusage``). With ``--precision`` values other
than float32 it also reports the outline agreement with the float32 run.

The model is the published-format reference checkpoint (``../shared/reference/weights``) when it
is there, otherwise a paper-size GlaViTU with seeded random weights saved as a bundle: speed and
memory do not depend on the weights' values.

Targets (2 cores): issue 4, float32 wall time ≤ 0.8 × the published pipeline's (92.7 s at 1500²),
≥ 90 % of the loop in the model, peak RSS ≤ 2 GB at 1500² growing ≤ 25 % to 3000²; issue 10,
float32 ≤ 0.7 × 92.7 s, bfloat16 ≥ 3.2 × faster than 92.7 s, peak RSS no higher than before.
92.7 s is a fixed figure from another day: compare before/after in one run on the same machine
(``benchmarks/model.py`` isolates the model's share).

    python benchmarks/deploy.py [--sizes 1500 3000] [--precision float32 bfloat16] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features import _glaviz, make_scene, measure

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "weights"
PUBLISHED_1500_S = 92.7


def model_path(workdir: Path) -> Path:
    reference = REFERENCE / "glavitu_global_weights.h5"
    if reference.exists():
        return reference
    path = workdir / "paper-random.glaviz"
    if not path.exists():
        from glaviz.model.bundle import BundleMetadata, save_bundle
        from glaviz.model.glavitu import GlaViTUConfig, build_glavitu
        from glaviz.published.normalisation import NormalisationStats

        config = GlaViTUConfig.create(features=["optical", "dem"])
        train, _ = build_glavitu(config)
        stats = NormalisationStats.published().to_dict()
        save_bundle(path, train, BundleMetadata(architecture=config, normalization=stats))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1500, 3000])
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=None, help="default: glaviz's own")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glaviz-deploy-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    weights = model_path(workdir)
    print(f"model: {weights}")
    rows = []
    for size in args.sizes:
        scene = workdir / f"scene_{size}"
        scene.mkdir(exist_ok=True)
        stack = scene / "stack.tif"
        if not stack.exists():
            optical, dem = make_scene(scene, size)
            cmd = [*_glaviz(), "-q", "features", "-o", str(stack)]
            subprocess.run([*cmd, "--optical", str(optical), "--elevation", str(dem)], check=True)
        reference_outlines = None
        for precision in args.precision:
            out = scene / f"out_{precision}"
            cmd = [*_glaviz(), "-q", "deploy", str(stack), "--weights", str(weights)]
            cmd += ["-o", str(out), "--overwrite", "--precision", precision]
            if args.batch_size:
                cmd += ["--batch-size", str(args.batch_size)]
            wall, rss = measure(cmd)
            run = json.loads((out / "run.json").read_text())
            t = run["timings"]
            with rasterio.open(out / "outlines.tif") as ds:
                outlines = ds.read(1)
            if reference_outlines is None:
                reference_outlines, agreement = outlines, 1.0
            else:
                agreement = float(np.mean(outlines == reference_outlines))
            rows.append(
                {
                    "size": size,
                    "precision": precision,
                    "windows": run["windows"],
                    "wall_s": wall,
                    "loop_s": t["loop_s"],
                    "model_s": t["model_s"],
                    "model_share_of_loop": t["model_s"] / t["loop_s"],
                    "model_share_of_wall": t["model_s"] / wall,
                    "windows_per_s": run["windows"] / t["loop_s"],
                    "peak_rss_mb": rss,
                    "agreement_with_float32": agreement,
                }
            )
            r = rows[-1]
            print(
                f"{size}² {precision:9s} {r['windows']:4d} windows  wall {wall:6.1f} s  "
                f"loop {t['loop_s']:6.1f} s  {r['windows_per_s']:.2f} win/s  "
                f"model {100 * r['model_share_of_loop']:.1f} % of loop "
                f"({100 * r['model_share_of_wall']:.1f} % of wall)  "
                f"peak RSS {rss:.0f} MB  agreement {100 * agreement:.3f} %",
                flush=True,
            )
    by = {(r["size"], r["precision"]): r for r in rows}
    if (1500, "float32") in by:
        r = by[(1500, "float32")]
        print(f"1500² float32 wall / published {PUBLISHED_1500_S} s = {r['wall_s'] / 92.7:.2f}")
    if (1500, "bfloat16") in by:
        speedup = PUBLISHED_1500_S / by[(1500, "bfloat16")]["wall_s"]
        print(f"1500² bfloat16 speed-up over the published pipeline: {speedup:.2f}×")
    for precision in args.precision:
        small, large = by.get((1500, precision)), by.get((3000, precision))
        if small and large:
            growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
            print(f"{precision}: peak RSS growth 1500² → 3000²: {100 * growth:+.1f} %")
    (workdir / "deploy-benchmark.json").write_text(json.dumps(rows, indent=2))
    print(f"results: {workdir / 'deploy-benchmark.json'}")


if __name__ == "__main__":
    main()
