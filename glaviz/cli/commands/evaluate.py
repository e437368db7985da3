"""``glaviz evaluate``: IoU, precision, recall, F1 and accuracy of a predictions file or a map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
from glaviz.cli.state import console, say, state
from glaviz.config import EvaluateConfig

if TYPE_CHECKING:
    from glaviz.evaluation import Counts, Evaluation


@config_command(
    "evaluate",
    EvaluateConfig,
    arguments={"predictions": "PREDICTIONS.h5"},
    options={"json_output": ["--scores"]},
    # This option was --json FILE, which clashed with the global --json flag.
    renamed={"--json": "--scores"},
)
def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Score glacier maps: IoU, precision, recall, F1, accuracy in total, per region, per subregion.

    Either a predictions file of glaviz predict, or a deployed map (--prediction) against
    reference outlines (--truth), which also reports the glacier areas in km². --scores FILE
    refuses to replace an existing FILE without --overwrite; --scores - prints the scores as JSON
    on stdout. The global --json (anywhere) prints one JSON object with the scores in it.

    Example: glaviz evaluate predictions_test.h5 --scores scores.json
    """
    return run_engine(api.evaluate, config, render=_show)


def _show(result: Evaluation, config: EvaluateConfig) -> None:
    """``--scores -``: the scores as JSON on stdout (part of the one object under the global
    ``--json``); otherwise the table, unless ``-q``."""
    if config.to_stdout:
        if not state.json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
    elif not state.quiet:
        _render(result, config.json_output)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _render(result: Evaluation, json_path: Path | None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("scope")
    table.add_column("name")
    for name in ("IoU", "precision", "recall", "F1", "accuracy"):
        table.add_column(name, justify="right")
    table.add_column("pixels", justify="right")

    def row(scope: str, name: str, counts: Counts) -> None:
        table.add_row(
            scope,
            Text(name),  # region names from the data are text, never rich markup
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
        say(
            f"glacier area: prediction {a.prediction_km2:.4f} km², truth {a.truth_km2:.4f} km², "
            f"difference {a.difference_km2:+.4f} km²; {result.excluded_pixels:,} pixels excluded "
            "(nodata or outside the truth)"
        )
    if json_path is not None:
        say(f"scores written to {json_path}")
