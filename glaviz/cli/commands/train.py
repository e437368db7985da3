"""``glaviz train``: train GlaViTU on benchmark HDF5 splits from a TOML config.

Not generated from its model like the other commands (:mod:`glaviz.cli.from_config`): a training
configuration is nested, so it is a file plus ``--set KEY=VALUE`` overrides rather than one option
per field. Reading it is :func:`glaviz.config.loading.load_train_config`, the same reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from glaviz.cli.app import app
from glaviz.cli.from_config import help_text
from glaviz.cli.state import console, prepare_tensorflow, say, state


def train(
    config: Annotated[
        Path, typer.Argument(help="Training config (TOML); see docs/training.md.", metavar="CONFIG")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a config value, KEY=VALUE with a dotted key (repeatable), e.g. "
            "--set training.epochs=3.",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in the output folder.")
    ] = False,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Exit 0 without work when the output folder holds a finished run of the same "
            "configuration, data and starting weights (exit 3 when it differs).",
        ),
    ] = False,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            "-w",
            help="Fine-tune from these weights (registry name, .h5 or .glaviz); sets "
            "training.strategy = finetune unless the config says otherwise.",
        ),
    ] = None,
) -> dict[str, Any]:
    """Train GlaViTU with the published recipe; the result is OUTPUT/model.glaviz.

    Keeps the best-IoU and lowest-loss bundles, CSV and TensorBoard logs, a resume point and a
    run record (run.json, read by --skip-existing) in the output folder. Relative paths in CONFIG
    are relative to CONFIG; in --set values, to the working directory.

    Example: glaviz train configs/example.toml --set training.epochs=3
    """
    from glaviz.config.loading import load_train_config

    settings = load_train_config(config, set_ or [], weights=weights)
    if skip_existing and not resume:
        from glaviz.training.record import finished_run

        bundle = finished_run(settings)
        if bundle is not None:
            if not state.quiet:
                say(
                    f"skipped: {bundle} is a finished run of the same configuration, data and "
                    "starting weights"
                )
            return {"status": "skipped", "outputs": [str(bundle)]}
    prepare_tensorflow()
    from glaviz.training.train import train as run_train
    from glaviz.util.tf import import_tensorflow

    import_tensorflow()  # the configuration is checked: start TensorFlow now, quietly

    result = run_train(settings, config_path=config, resume=resume, progress=state.show_progress)
    if not state.quiet:
        console.print(
            f"{result.epochs_run} epochs, best validation IoU {result.best_val_iou:.4f} "
            f"(epoch {result.best_epoch}) in {result.seconds:.0f} s; model: {result.bundle}",
            highlight=False,
        )
    return {
        "outputs": [str(result.bundle)],
        "counts": {
            "epochs": result.epochs_run,
            "best_epoch": result.best_epoch,
            "best_val_iou": result.best_val_iou,
        },
        "timings": {"total_s": result.seconds},
    }


# The exit codes sentence comes from the one table of them (glaviz.errors), as for every command.
train.__doc__ = help_text(train.__doc__ or "")
app.command("train")(train)
