"""``glaviz batch``: many scenes through features and deploy on Dask distributed.

Not generated from a config model like most commands (:mod:`glaviz.cli.from_config`), and so
without ``--config``/``--print-config``: the JOB file is the batch's configuration (output root,
``[deploy]``/``[features]`` settings, scenes; :mod:`glaviz.config.batch`), and the options here
only say how to run it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from glaviz.cli.app import app
from glaviz.cli.from_config import help_text
from glaviz.cli.state import err_console, say, state


def batch(
    job: Annotated[
        Path,
        typer.Argument(
            help="Job file (TOML or JSON: output, [deploy], [features], scenes): the batch's "
            "configuration, in place of --config.",
            metavar="JOB",
        ),
    ],
    scheduler: Annotated[
        str,
        typer.Option(help="'local' (an embedded Dask LocalCluster) or tcp://HOST:PORT to join."),
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option(help="Workers of the local cluster (default: GPUs, else cores ÷ 4)."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="Run only shard I/N (0-based) in this process, without Dask."),
    ] = None,
    retries: Annotated[
        int, typer.Option(help="Extra attempts after a lost worker, out-of-memory or signal.")
    ] = 2,
    force: Annotated[
        bool, typer.Option("--force", help="Recompute scenes even when their record matches.")
    ] = False,
) -> dict[str, Any]:
    """Map glaciers on many scenes: skip done ones, retry lost workers, merge the results.

    Writes OUTPUT/<id>/ per scene, OUTPUT/summary.csv and OUTPUT/outlines.gpkg (EPSG:4326,
    geodesic areas). Exit 0 when every scene is done, 1 when any failed. With the global --json,
    stdout is one JSON object with every scene's result, also when some failed.

    Example: glaviz batch job.toml --workers 2
    """
    from glaviz.batch import run_batch
    from glaviz.batch.plan import parse_shard

    def announce(line: str) -> None:
        if not state.quiet:
            say(line, to=err_console)

    result = run_batch(
        job,
        scheduler=scheduler,
        workers=workers,
        shard=parse_shard(shard) if shard else None,
        retries=retries,
        force=force,
        progress=state.show_progress,
        announce=announce,
    )
    if not state.quiet:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts.items()))
        say(
            f"{len(result.outcomes)} scenes ({counts}) in {result.seconds:.1f} s; "
            f"{result.polygons} polygons in {result.outlines}; summary {result.summary}"
        )
        for o in result.outcomes:
            if o.status == "failed":
                say(f"failed: {o.id}: {o.error}", to=err_console)
    summary = json.loads(json.dumps(result.to_dict(), default=str))
    failed = [o for o in result.outcomes if o.status == "failed"]
    if failed:
        from glaviz.errors import GlavizError

        names = ", ".join(o.id for o in failed[:5]) + (", …" if len(failed) > 5 else "")
        error = GlavizError(
            f"{len(failed)} of {len(result.outcomes)} scenes failed ({names}); see {result.summary}"
        )
        error.payload = summary  # the --json object still lists every scene
        raise error
    return summary


# The exit codes sentence comes from the one table of them (glaviz.errors), as for every command.
batch.__doc__ = help_text(batch.__doc__ or "")
app.command("batch")(batch)
