"""The base of every command's configuration model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CommandConfig(BaseModel):
    """Options of one command. Unknown keys are errors, so a typo in a config file is caught."""

    model_config = ConfigDict(extra="forbid", frozen=True)
