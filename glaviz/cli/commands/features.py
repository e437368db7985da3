"""``glaviz features``: compile input rasters (or a published feature file) into one stack."""

from __future__ import annotations

from typing import Any

from glaviz.cli.from_config import config_command
from glaviz.cli.state import say, state
from glaviz.config import FeaturesConfig


@config_command("features", FeaturesConfig, options={"output": ["--output", "-o"]})
def features(config: FeaturesConfig) -> dict[str, Any]:
    """Compile a float32 feature stack on the optical grid, warping and checking every input.

    --optical and --elevation are required unless --from-published names a published
    compile_features.py file (read with an allow-list unpickler).

    Example: glaviz features -o stack.tif --optical s2.tif --elevation dem.tif

    Example: glaviz features --from-published swiss_alps_features-004.pickle -o stack.tif
    """
    from glaviz import api

    result = api.compile_features(config, progress=state.show_progress, check=False)
    assert not isinstance(result, api.Skipped)
    if not state.quiet:
        say(
            f"Wrote {result.path}: {result.width} × {result.height} px, {len(result.bands)} bands "
            f"({', '.join(result.groups)}), {result.crs}, {result.seconds:.1f} s"
        )
    return {
        "outputs": [str(result.path)],
        "counts": {"width": result.width, "height": result.height, "bands": len(result.bands)},
        "timings": {"total_s": result.seconds},
    }
