"""``glaviz evaluate``: IoU, precision, recall, F1 and accuracy of a predictions file or a map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, state
from glaviz.errors import ConfigError

if TYPE_CHECKING:
    from glaviz.evaluation import Counts, Evaluation


@app.command("evaluate")
def evaluate(
    predictions: Annotated[
        Path | None,
        typer.Argument(
            help="Predictions HDF5 of glaviz predict (needs the 'true' datasets).",
            metavar="PREDICTIONS.h5",
            show_default=False,
        ),
    ] = None,
    prediction: Annotated[
        Path | None,
        typer.Option(help="Outlines raster to score instead (0/1, nodata excluded)."),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="Reference outlines for --prediction: raster, or .gpkg/.shp/.geojson."),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the scores as JSON here ('-': stdout only)."),
    ] = None,
) -> None:
    """Score glacier maps: IoU, precision, recall, F1, accuracy in total, per region, per subregion.

    Either a predictions file of glaviz predict, or a deployed map (--prediction) against
    reference outlines (--truth), which also reports the glacier areas in km².

    Example: glaviz evaluate predictions_test.h5 --json scores.json
    """
    if predictions is not None and (prediction is not None or truth is not None):
        raise ConfigError(
            f"give either a predictions file ({predictions}) or --prediction/--truth, not both"
        )
    if predictions is None and (prediction is None or truth is None):
        given = "--prediction" if prediction is not None else "--truth" if truth else None
        raise ConfigError(
            (f"{given} needs its partner; " if given else "nothing to evaluate; ")
            + "use glaviz evaluate PREDICTIONS.h5, or glaviz evaluate --prediction OUTLINES.tif "
            "--truth TRUTH.gpkg"
        )
    from glaviz.evaluation import evaluate_predictions, evaluate_rasters, write_json_atomic

    if predictions is not None:
        result = evaluate_predictions(predictions=predictions, progress=state.show_progress)
    else:
        assert prediction is not None and truth is not None
        result = evaluate_rasters(prediction=prediction, truth=truth, progress=state.show_progress)

    if json_path is not None and str(json_path) == "-":
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    if json_path is not None:
        write_json_atomic(result.to_dict(), json_path)
    if not state.quiet:
        _render(result, json_path)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _render(result: Evaluation, json_path: Path | None) -> None:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("scope")
    table.add_column("name")
    for name in ("IoU", "precision", "recall", "F1", "accuracy"):
        table.add_column(name, justify="right")
    table.add_column("pixels", justify="right")

    def row(scope: str, name: str, counts: Counts) -> None:
        table.add_row(
            scope,
            name,
            *(_fmt(v) for v in (counts.iou, counts.precision, counts.recall, counts.f1)),
            _fmt(counts.accuracy),
            f"{counts.total:,}",
        )

    row("total", "", result.total)
    for scope, groups in (("region", result.regions), ("subregion", result.subregions)):
        for index, name in enumerate(sorted(groups)):
            if index == 0:
                table.add_section()
            row(scope, name, groups[name])
    console.print(table)
    if result.areas is not None:
        a = result.areas
        console.print(
            f"glacier area: prediction {a.prediction_km2:.4f} km², truth {a.truth_km2:.4f} km², "
            f"difference {a.difference_km2:+.4f} km²; {result.excluded_pixels:,} pixels excluded "
            "(nodata or outside the truth)",
            highlight=False,
        )
    if json_path is not None:
        console.print(f"scores written to {json_path}", markup=False, highlight=False)
