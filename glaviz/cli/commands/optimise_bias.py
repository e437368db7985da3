"""``glaviz optimise-bias``: fit the region vector of a region-encoding model to a new scene."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, prepare_tensorflow, state


@app.command("optimise-bias")
def optimise_bias(
    stack: Annotated[
        Path, typer.Argument(help="Feature stack GeoTIFF made by glaviz features.", metavar="STACK")
    ],
    weights: Annotated[
        str, typer.Option("--weights", "-w", help="A region-encoding model: name, .h5 or .glaviz.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Region vector JSON to write.")],
    epochs: Annotated[int, typer.Option(help="Most epochs to run (early stop as published).")] = (
        100
    ),
    seed: Annotated[int, typer.Option(help="Seed of the random windows.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Windows per optimisation step.")] = 8,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-4,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT.")] = False,
) -> None:
    """Learn the region vector that makes a region-encoding model most confident on a scene.

    The vector (softmax of a learned bias, sums to 1) feeds glaviz deploy --region-vector.

    Example: glaviz optimise-bias stack.tif --weights region-encoding -o rv.json
    """
    prepare_tensorflow()
    from glaviz.engine.bias import optimise_bias as run

    result = run(
        stack=stack,
        weights=weights,
        output=output,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        learning_rate=learning_rate,
        overwrite=overwrite,
        progress=state.show_progress,
    )
    if not state.quiet:
        console.print(
            f"mean entropy {result.entropy_before:.4f} → {result.entropy_after:.4f} after "
            f"{result.epochs} epochs; region vector written to {result.path}",
            highlight=False,
        )
