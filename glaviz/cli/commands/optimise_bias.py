"""``glaviz optimise-bias``: fit the region vector of a region-encoding model to a new scene."""

from __future__ import annotations

from typing import Any

from glaviz.cli.from_config import config_command
from glaviz.cli.state import prepare_tensorflow, say, state
from glaviz.config import OptimiseBiasConfig


@config_command(
    "optimise-bias",
    OptimiseBiasConfig,
    arguments={"stack": "STACK"},
    options={"weights": ["--weights", "-w"], "output": ["--output", "-o"]},
)
def optimise_bias(config: OptimiseBiasConfig) -> dict[str, Any]:
    """Learn the region vector that makes a region-encoding model most confident on a scene.

    The vector (softmax of a learned bias, sums to 1) feeds glaviz deploy --region-vector.

    Example: glaviz optimise-bias stack.tif --weights region-encoding -o rv.json
    """
    prepare_tensorflow()
    from glaviz import api

    result = api.optimise_bias(config, progress=state.show_progress, check=False)
    assert not isinstance(result, api.Skipped)
    if not state.quiet:
        say(
            f"mean entropy {result.entropy_before:.4f} → {result.entropy_after:.4f} after "
            f"{result.epochs} epochs; region vector written to {result.path}"
        )
    return {
        "outputs": [str(result.path)],
        "region_vector": result.region_vector,
        "regions": result.regions,
        "counts": {
            "epochs": result.epochs,
            "entropy_before": result.entropy_before,
            "entropy_after": result.entropy_after,
        },
    }
