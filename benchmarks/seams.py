"""Window seams in the confidence of glaviz's own models: the published blend against the taper.

Deploys the built-in demo model on a generated scene once per blend and reports, for the
confidence and the glacier probability, how much the column (and row) means jump at window
edges compared with everywhere else:

* ``seam jump``: mean |difference of neighbouring column means| across the columns where a
  window starts or ends;
* ``elsewhere``: the same across all other columns;
* ``ratio``: seam jump / elsewhere (about 1 when window edges are invisible).

Both quicklooks are written next to the report, so the grid can be seen.

Run: ``python benchmarks/seams.py [--size 1024] [--seed 2024] [--out build/seams]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import rasterio


def seam_contrast(values: np.ndarray, edges: set[int]) -> dict[str, float]:
    """How much the means across axis 0 jump at ``edges`` (columns) against elsewhere."""
    means = np.nanmean(values, axis=0)
    jumps = np.abs(np.diff(means))  # jumps[i]: between column i and i + 1
    at = np.array([i for i in range(len(jumps)) if (i + 1) in edges])
    rest = np.array([i for i in range(len(jumps)) if (i + 1) not in edges])
    seam, other = float(jumps[at].mean()), float(jumps[rest].mean())
    return {"seam_jump": seam, "elsewhere": other, "ratio": seam / other}


def window_edges(size: int, patch: int) -> set[int]:
    """Scene columns where a window starts or ends (first column of the next window)."""
    from glaviz.engine.tiling import tile_grid

    grid = tile_grid(size, size, patch)
    pad = grid.scene_cols.start
    edges = set()
    for origin in grid.col_origins:
        edges.update({origin - pad, origin - pad + patch})
    return {e for e in edges if 0 < e < size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, default=Path("build/seams"))
    args = parser.parse_args()

    import glaviz
    from glaviz.model.bundle import read_metadata
    from glaviz.registry.catalogue import resolve_weights
    from glaviz.samples import make_scene

    out: Path = args.out
    scene = make_scene(out / "scene", size=(args.size, args.size), seed=args.seed, overwrite=True)
    stack = out / "stack.tif"
    glaviz.compile_features(
        glaviz.FeaturesConfig(
            optical=scene.optical, elevation=scene.elevation, output=stack, overwrite=True
        )
    )
    patch = read_metadata(resolve_weights("demo").path).architecture.patch_size
    edges = window_edges(args.size, patch)
    report: dict[str, object] = {"size": args.size, "patch": patch, "seed": args.seed}
    for blend in ("gaussian", "taper"):
        folder = out / blend
        started = time.perf_counter()
        glaviz.deploy(
            glaviz.DeployConfig(
                stack=stack,
                weights="demo",
                output=folder,
                blend=blend,
                probabilities=True,
                overwrite=True,
            )
        )
        seconds = time.perf_counter() - started
        with rasterio.open(folder / "confidence.tif") as src:
            confidence = src.read(1)
        with rasterio.open(folder / "probabilities.tif") as src:
            glacier = src.read(2)
        report[blend] = {
            "seconds": round(seconds, 2),
            "confidence_columns": seam_contrast(confidence, edges),
            "confidence_rows": seam_contrast(confidence.T, edges),
            "glacier_probability_columns": seam_contrast(glacier, edges),
            "mean_confidence": float(np.nanmean(confidence)),
            "quicklook": str(folder / "quicklook.png"),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
