"""``glaviz deploy``: map glaciers on a whole feature stack."""

from __future__ import annotations

from typing import Any

from glaviz.cli.from_config import config_command
from glaviz.cli.state import prepare_tensorflow, say, state
from glaviz.config import DeployConfig


@config_command(
    "deploy",
    DeployConfig,
    arguments={"stack": "STACK"},
    options={"weights": ["--weights", "-w"], "output": ["--output", "-o"]},
)
def deploy(config: DeployConfig) -> dict[str, Any]:
    """Map glacier outlines and confidence on a whole scene with a streaming tiled engine.

    Writes outlines.tif, confidence.tif, outlines.gpkg and run.json into the output folder,
    by default STACK's name with .glaviz (stack.tif → stack.glaviz/) beside the stack. The
    run.json is a --config file that re-runs the same job.

    Example: glaviz deploy stack.tif --weights global --smoothing 3
    """
    prepare_tensorflow()
    from glaviz.engine.deploy import deploy as run_deploy

    result = run_deploy(config, progress=state.show_progress)
    t = result.timings
    if not state.quiet:
        say(
            f"{result.windows} windows in {t['loop_s']:.1f} s "
            f"({result.windows / max(t['loop_s'], 1e-9):.2f} windows/s); "
            f"glacier {100 * result.glacier_fraction:.1f} % of valid pixels"
            + (f", {result.polygons} polygons" if result.polygons is not None else "")
            + f"; outputs in {result.outdir}/"
        )
    return {
        "outdir": str(result.outdir),
        "outputs": [str(p) for p in result.outputs],
        "counts": {
            "windows": result.windows,
            "polygons": result.polygons,
            "glacier_fraction": result.glacier_fraction,
        },
        "timings": t,
    }
