"""``python -m glaviz.samples scene DIR`` / ``benchmark DIR``: write sample data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from glaviz.samples.benchmark import make_benchmark_splits
from glaviz.samples.scene import REGION_STYLES, make_scene


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m glaviz.samples scene DIR`` / ``benchmark DIR``: write sample data.

    A developer entry point for ``make demo`` and for producing the demo model's training data
    (``configs/demo.toml``); not part of the ``glaviz`` command contract.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m glaviz.samples", description=main.__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    scene = sub.add_parser("scene", help="optical.tif, elevation.tif, truth.tif")
    scene.add_argument("directory", type=Path)
    scene.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    scene.add_argument("--seed", type=int, default=0)
    scene.add_argument("--region", default="ALP", choices=sorted(REGION_STYLES))
    bench = sub.add_parser("benchmark", help="train.h5, val.h5, test.h5")
    bench.add_argument("directory", type=Path)
    bench.add_argument(
        "--tiles", type=int, nargs=3, default=(8, 2, 2), metavar=("TRAIN", "VAL", "TEST")
    )
    bench.add_argument("--tile-size", type=int, default=96)
    bench.add_argument("--patch-size", type=int, default=32)
    bench.add_argument(
        "--regions", nargs="+", default=["ALP", "HMA"], choices=sorted(REGION_STYLES)
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--layout",
        default="glaviz",
        choices=("glaviz", "published"),
        help="published: float64, contiguous, bright_dark_outlines, epsg (as the real files)",
    )
    bench.add_argument("--names", default="samples", choices=("samples", "demo", "benchmark"))
    args = parser.parse_args(argv)
    if args.what == "scene":
        files = make_scene(
            args.directory, size=tuple(args.size), seed=args.seed, region=args.region
        )
        print(f"wrote {files.optical}, {files.elevation}, {files.truth}")
    else:
        paths = make_benchmark_splits(
            args.directory,
            tiles=tuple(args.tiles),
            seed=args.seed,
            tile_size=args.tile_size,
            patch_size=args.patch_size,
            regions=tuple(args.regions),
            layout=args.layout,
            names=args.names,
        )
        print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
