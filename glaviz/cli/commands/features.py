"""``glaviz features``: compile input rasters (or a published feature file) into one stack."""

from __future__ import annotations

from typing import Any

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
from glaviz.config import FeaturesConfig


@config_command("features", FeaturesConfig, options={"output": ["--output", "-o"]})
def features(config: FeaturesConfig) -> dict[str, Any]:
    """Compile a float32 feature stack on the optical grid, warping and checking every input.

    --optical and --elevation are required unless --from-published names a published
    compile_features.py file (read with an allow-list unpickler).

    Example: glaviz features -o stack.tif --optical s2.tif --elevation dem.tif --date 2023-08-21

    Example: glaviz features --from-published swiss_alps_features-004.pickle -o stack.tif
    """
    return run_engine(api.compile_features, config)
