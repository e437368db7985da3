"""``glaviz optimise-bias``: fit the region vector of a region-encoding model to a new scene."""

from __future__ import annotations

from typing import Any

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
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
    return run_engine(api.optimise_bias, config, tensorflow=True)
