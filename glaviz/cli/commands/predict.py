"""``glaviz predict``: run a model over every tile of a benchmark split."""

from __future__ import annotations

from typing import Any

from glaviz.cli.from_config import config_command
from glaviz.cli.state import prepare_tensorflow, say, state
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
    prepare_tensorflow()
    from glaviz import api

    result = api.predict(config, progress=state.show_progress, check=False)
    assert not isinstance(result, api.Skipped)
    if not state.quiet:
        say(
            f"{result.tiles} tiles ({result.windows} windows) predicted in "
            f"{result.timings['loop_s']:.1f} s; written to {result.path}"
        )
    return {
        "outputs": [str(result.path)],
        "counts": {"tiles": result.tiles, "windows": result.windows},
        "timings": result.timings,
    }
