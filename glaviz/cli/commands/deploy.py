"""``glaviz deploy``: map glaciers on a whole feature stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, prepare_tensorflow, state


@app.command("deploy")
def deploy(
    stack: Annotated[
        Path, typer.Argument(help="Feature stack GeoTIFF made by glaviz features.", metavar="STACK")
    ],
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            "-w",
            help="Registry name (global, hma, …), .h5 checkpoint or .glaviz bundle.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
    features: Annotated[
        str | None,
        typer.Option(
            help="Feature groups of a .h5 checkpoint, in model order (default: read from the "
            "weights, else optical,dem)."
        ),
    ] = None,
    region_vector: Annotated[
        Path | None,
        typer.Option(help="Region vector JSON for a region-encoding model (glaviz optimise-bias)."),
    ] = None,
    coordinate_encoding: Annotated[
        bool, typer.Option(help="Feed sin/cos of each window's latitude and longitude.")
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="Confidence calibration: a CAL.json, a packaged name, or 'none'. Default: the "
            "model's own, if it has one."
        ),
    ] = None,
    smoothing: Annotated[int, typer.Option(help="Median filter size for outlines (0: off).")] = 0,
    tta: Annotated[bool, typer.Option(help="Average the 8 flips and rotations of each window.")] = (
        False
    ),
    mc: Annotated[int, typer.Option(help="Monte Carlo dropout passes to average (0: off).")] = 0,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Largest number of windows per model call (default: 1 on CPU, 8 on GPU)."
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            help="float32 (published numbers), bfloat16 (CPUs with AVX512-BF16/AMX, GPUs), "
            "float16 (GPUs)."
        ),
    ] = "float32",
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Also write probabilities.tif.")
    ] = False,
    no_vector: Annotated[
        bool, typer.Option("--no-vector", help="Skip the outlines.gpkg polygons.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace outputs already in the folder.")
    ] = False,
) -> None:
    """Map glacier outlines and confidence on a whole scene with a streaming tiled engine.

    Writes outlines.tif, confidence.tif, outlines.gpkg and run.json into the output folder.

    Example: glaviz deploy stack.tif --weights global -o out/ --smoothing 3
    """
    prepare_tensorflow()
    from glaviz.config import DeployConfig
    from glaviz.engine.deploy import deploy as run_deploy
    from glaviz.groups import parse_features

    config = DeployConfig(
        stack=stack,
        weights=weights,
        output=output,
        features=parse_features(features) if features else None,
        region_vector=region_vector,
        coordinate_encoding=coordinate_encoding,
        calibration=calibration,
        smoothing=smoothing,
        tta=tta,
        mc=mc,
        batch_size=batch_size,
        probabilities=probabilities,
        vector=not no_vector,
        overwrite=overwrite,
        precision=precision,
    )
    result = run_deploy(config, progress=state.show_progress)
    if not state.quiet:
        t = result.timings
        console.print(
            f"{result.windows} windows in {t['loop_s']:.1f} s "
            f"({result.windows / max(t['loop_s'], 1e-9):.2f} windows/s); "
            f"glacier {100 * result.glacier_fraction:.1f} % of valid pixels"
            + (f", {result.polygons} polygons" if result.polygons is not None else "")
            + f"; outputs in {result.outdir}/",
            highlight=False,
        )
