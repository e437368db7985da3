"""``glaviz predict``: run a model over every tile of a benchmark split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, prepare_tensorflow, state


@app.command("predict")
def predict(
    weights: Annotated[
        str,
        typer.Option("--weights", "-w", help="Registry name, .h5 checkpoint or .glaviz bundle."),
    ],
    dataset: Annotated[
        Path, typer.Option("--dataset", help="Benchmark split (HDF5), e.g. test.h5.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions HDF5 to write.")],
    features: Annotated[
        str | None, typer.Option(help="Feature groups of a .h5 checkpoint, in model order.")
    ] = None,
    region: Annotated[
        list[str] | None, typer.Option(help="Only tiles of this region (repeatable).")
    ] = None,
    subregion: Annotated[
        list[str] | None, typer.Option(help="Only tiles of this subregion (repeatable).")
    ] = None,
    tta: Annotated[bool, typer.Option(help="Average the 8 flips and rotations of each window.")] = (
        False
    ),
    mc: Annotated[int, typer.Option(help="Monte Carlo dropout passes to average (0: off).")] = 0,
    batch_size: Annotated[
        int | None, typer.Option(help="Windows per model call (default: 1 on CPU, 8 on GPU).")
    ] = None,
    precision: Annotated[str, typer.Option(help="float32, bfloat16 or float16 (GPU).")] = "float32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT.")] = False,
) -> None:
    """Predict every tile of a benchmark split into a predictions file for evaluate/calibrate.

    Example: glaviz predict --weights model.glaviz --dataset test.h5 -o predictions.h5
    """
    prepare_tensorflow()
    from glaviz.engine.predict import predict as run
    from glaviz.groups import parse_features

    result = run(
        weights=weights,
        dataset=dataset,
        output=output,
        features=parse_features(features) if features else None,
        regions=region,
        subregions=subregion,
        tta=tta,
        mc=mc,
        batch_size=batch_size,
        precision=precision,
        overwrite=overwrite,
        progress=state.show_progress,
    )
    if not state.quiet:
        console.print(
            f"{result.tiles} tiles ({result.windows} windows) predicted in "
            f"{result.timings['loop_s']:.1f} s; written to {result.path}",
            highlight=False,
        )
