"""``glaviz deploy``: map glaciers on a whole feature stack."""

from __future__ import annotations

from typing import Any

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
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
    run.json is a --config file that re-runs the same job. Windows with no valid pixel are not
    computed; with --roi FILE or --roi-from-reference RGI.gpkg only windows that meet the
    region of interest are, and pixels outside it are written as not mapped (nodata).

    Example: glaviz deploy stack.tif --weights global --roi-from-reference rgi.gpkg
    """
    return run_engine(api.deploy, config, tensorflow=True)
