"""``glaviz calibrate``: fit a confidence calibration on validation predictions."""

from __future__ import annotations

from typing import Any

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
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
    return run_engine(api.calibrate, config)
