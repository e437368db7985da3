"""``glaviz predict``: run a model over every tile of a benchmark split."""

from __future__ import annotations

from typing import Any

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
from glaviz.config import PredictConfig


@config_command(
    "predict",
    PredictConfig,
    options={"weights": ["--weights", "-w"], "output": ["--output", "-o"]},
)
def predict(config: PredictConfig) -> dict[str, Any]:
    """Predict every tile of a benchmark split into a predictions file for evaluate/calibrate.

    Example: glaviz predict --weights model.glaviz --dataset test.h5 -o predictions.h5
    """
    return run_engine(api.predict, config, tensorflow=True)
