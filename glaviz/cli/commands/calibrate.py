"""``glaviz calibrate``: fit a confidence calibration on validation predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, state


@app.command("calibrate")
def calibrate(
    predictions: Annotated[
        Path,
        typer.Argument(
            help="Predictions HDF5 of glaviz predict on a validation split (with truth).",
            metavar="PREDICTIONS.h5",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Calibration JSON to write (CAL.json).")
    ],
    plot: Annotated[
        Path | None,
        typer.Option(help="Also draw the reliability diagram, before and after, as a PNG."),
    ] = None,
    bins: Annotated[
        int, typer.Option(help="Equal confidence bins of the diagram and the fit.")
    ] = 100,
    method: Annotated[
        str,
        typer.Option(help="kernel-ridge (the published procedure) or isotonic (a monotone table)."),
    ] = "kernel-ridge",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
) -> None:
    """Fit a confidence calibration with the published procedure; report ECE before and after.

    The JSON it writes is what glaviz deploy --calibration reads. ECE uses 100 bins.

    Example: glaviz calibrate predictions_val.h5 -o calibration.json --plot reliability.png
    """
    from glaviz.calibration.fit import calibrate as run_calibrate

    result = run_calibrate(
        predictions=predictions,
        output=output,
        bins=bins,
        method=method,
        plot=plot,
        overwrite=overwrite,
        progress=state.show_progress,
    )
    if not state.quiet:
        console.print(
            f"ECE (100 bins): {100 * result.ece_before:.2f} % before, "
            f"{100 * result.ece_after:.2f} % after {result.method} calibration "
            f"({result.pixels:,} pixels, {result.tiles} tiles); wrote {result.output}"
            + (f" and {result.plot}" if result.plot else ""),
            markup=False,
            highlight=False,
        )
