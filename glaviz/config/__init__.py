"""One pydantic model per command: the single definition of its options.

The CLI options, ``--config`` files and the settings recorded in run records all come from these
models, so an option is written once. ``glaviz train``'s model (:class:`TrainConfig`) is nested
in sections because a training run is described by a file rather than typed options.
``glaviz.config.loading`` is the one reader: it reads config files and merges them with the
command line for every command, train included; the models themselves import nothing heavy.
"""

from glaviz.config.acquire import AcquireConfig
from glaviz.config.base import CommandConfig
from glaviz.config.calibrate import CalibrateConfig
from glaviz.config.change import ChangeConfig
from glaviz.config.deploy import DeployConfig
from glaviz.config.evaluate import EvaluateConfig
from glaviz.config.features import FeaturesConfig
from glaviz.config.fetch import FetchDatasetConfig, FetchWeightsConfig
from glaviz.config.inventory import InventoryConfig
from glaviz.config.optimise_bias import OptimiseBiasConfig
from glaviz.config.predict import PredictConfig

__all__ = [
    "AcquireConfig",
    "CalibrateConfig",
    "ChangeConfig",
    "CommandConfig",
    "DeployConfig",
    "EvaluateConfig",
    "FeaturesConfig",
    "FetchDatasetConfig",
    "FetchWeightsConfig",
    "InventoryConfig",
    "OptimiseBiasConfig",
    "PredictConfig",
    "TrainConfig",
]


def __getattr__(name: str) -> object:
    # TrainConfig's nested models take ~8 ms to build; only train and the library need them, so
    # the CLI's start (every command imports this package) does not pay for them.
    if name == "TrainConfig":
        from glaviz.config.train import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'glaviz.config' has no attribute {name!r}")
