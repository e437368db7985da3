"""``glaviz fetch-weights`` options."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from glaviz.config.base import CommandConfig


class FetchWeightsConfig(CommandConfig):
    """Which registry models to list, download or import. The cache is its own skip-existing:
    a verified cached file is never fetched again unless ``force``."""

    OUTPUT_FIELDS: ClassVar[frozenset[str]] = frozenset()

    names: list[str] = Field([], description="Registry model names (e.g. global, hma); see --list.")
    list_models: bool = Field(False, description="Show the registry and what is cached (offline).")
    all_models: bool = Field(False, description="Fetch every registry model.")
    from_file: Path | None = Field(
        None, description="Import this hand-downloaded file as NAME (verified like a download)."
    )
    base_url: str | None = Field(
        None,
        description="Mirror URL or folder; the file name is appended. "
        "Default: $GLAVIZ_WEIGHTS_URL.",
    )
    force: bool = Field(False, description="Download or import again even if cached.")

    @model_validator(mode="after")
    def _consistent(self) -> FetchWeightsConfig:
        if self.list_models:
            if self.all_models or self.from_file is not None or self.force:
                raise ValueError("--list cannot be combined with --all, --from or --force")
            return self
        if self.all_models and self.names:
            raise ValueError("give model names or --all, not both")
        if self.from_file is not None:
            if self.base_url is not None:
                raise ValueError(
                    "--from imports a local file; it cannot be combined with --base-url"
                )
            if self.all_models or len(self.names) != 1:
                raise ValueError(
                    "--from imports one file: give exactly one model name, e.g. "
                    "glaviz fetch-weights global --from glavitu_global_weights.h5"
                )
            return self
        if not self.names and not self.all_models:
            raise ValueError(
                "name the model(s) to fetch (e.g. glaviz fetch-weights global), "
                "or use --all, or --list to see them"
            )
        return self
