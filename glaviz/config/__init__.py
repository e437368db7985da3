"""One pydantic model per command: the single definition of its options.

The CLI options, ``--config`` files and the settings recorded in run records all come from these
models, so an option is written once.
"""

from glaviz.config.base import CommandConfig
from glaviz.config.deploy import DeployConfig
from glaviz.config.features import FeaturesConfig

__all__ = ["CommandConfig", "DeployConfig", "FeaturesConfig"]
