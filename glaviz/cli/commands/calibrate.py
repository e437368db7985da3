"""``glaviz calibrate``: fit a confidence calibration on validation predictions."""

from __future__ import annotations

from typing import Any

from glaviz.cli.from_config import config_command
from glaviz.cli.state import say, state
from glaviz.config import CalibrateConfig


@config_command(
    "calibrate",
    CalibrateConfig,
    arguments={"predictions": "PREDICTIONS.h5"},
    options={"output": ["--output", "-o"]},
)
def calibrate(config: CalibrateConfig) -> dict[str, Any]:
    """Fit a confidence calibration with the published procedure; report ECE before and after.

    The JSON it writes is what glaviz deploy --calibration reads. ECE uses 100 bins.

    Example: glaviz calibrate predictions_val.h5 -o calibration.json --plot reliability.png
    """
    from glaviz import api

    result = api.calibrate(config, progress=state.show_progress, check=False)
    assert not isinstance(result, api.Skipped)
    if not state.quiet:
        say(
            f"ECE (100 bins): {100 * result.ece_before:.2f} % before, "
            f"{100 * result.ece_after:.2f} % after {result.method} calibration "
            f"({result.pixels:,} pixels, {result.tiles} tiles); wrote {result.output}"
            + (f" and {result.plot}" if result.plot else "")
        )
    outputs = [p for p in (result.output, result.plot) if p is not None]
    return {
        "outputs": [str(p) for p in outputs],
        "counts": {
            "ece_before": result.ece_before,
            "ece_after": result.ece_after,
            "pixels": result.pixels,
            "tiles": result.tiles,
        },
        "method": result.method,
    }
