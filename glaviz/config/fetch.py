"""``glaviz fetch-weights`` and ``glaviz fetch-dataset`` options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from glaviz.config.base import CommandConfig

DatasetName = Literal["benchmark", "demo", "independent"]
Split = Literal["train", "val", "test"]
Area = Literal["swiss_alps", "sc1", "alaska", "southern_canada"]


class FetchWeightsConfig(CommandConfig):
    """Which published models to list, download or import, and from where."""

    names: tuple[str, ...] = Field((), description="Registry model names (global, hma, …).")
    list_only: bool = Field(False, description="Show the registry and what is cached (offline).")
    all_models: bool = Field(False, description="Fetch every registry model.")
    from_file: Path | None = Field(
        None, description="Import this hand-downloaded file as the one named model."
    )
    base_url: str | None = Field(
        None,
        description="Mirror URL or folder, tried first; the file name is appended. "
        "Default: $GLAVIZ_WEIGHTS_URL.",
    )
    force: bool = Field(False, description="Download or import again even if cached.")
    sha256: str | None = Field(
        None,
        description="Expected sha256 of the one named model's file (64 hex digits); another "
        "file is refused and deleted. With --force, accepts a new file on purpose.",
    )

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, value: str | None) -> str | None:
        # A typo must fail here: a wrong pin would refuse the right file after the download.
        if value is None:
            return None
        digest = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("expected 64 hexadecimal digits (as printed by sha256sum)")
        return digest

    @model_validator(mode="after")
    def _consistent(self) -> FetchWeightsConfig:
        if self.list_only:
            if self.all_models or self.from_file is not None or self.force or self.sha256:
                raise ValueError(
                    "--list cannot be combined with --all, --from, --force or --sha256"
                )
            return self
        if self.sha256 is not None and (self.all_models or len(self.names) != 1):
            raise ValueError(
                "--sha256 pins one file: give exactly one model name, e.g. "
                "glaviz fetch-weights global --sha256 HEX"
            )
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
        elif not self.names and not self.all_models:
            raise ValueError(
                "name the model(s) to fetch (e.g. glaviz fetch-weights global), "
                "or use --all, or --list to see them"
            )
        return self


class FetchDatasetConfig(CommandConfig):
    """Which published dataset files to download from the NIRD archive, and where to."""

    name: DatasetName | None = Field(
        None, description="benchmark (20230905 files), demo (gsgm DEMO files) or independent."
    )
    split: list[Split] = Field(
        [], description="Splits of benchmark or demo (default: train, val and test)."
    )
    area: list[Area] = Field([], description="Areas of independent (default: all four).")
    to: Path = Field(Path("."), description="Folder to download into (default: the current one).")
    list_only: bool = Field(False, description="List the files, sizes and md5 (offline).")
    base_url: str | None = Field(
        None,
        description="Mirror of the archive's download folder; the file name is appended. "
        "Default: $GLAVIZ_DATASET_URL, else the NIRD archive.",
    )
    force: bool = Field(False, description="Download again even if the file is already there.")

    @model_validator(mode="after")
    def _consistent(self) -> FetchDatasetConfig:
        if self.name is None and not self.list_only:
            raise ValueError(
                "name the dataset: benchmark, demo or independent "
                "(glaviz fetch-dataset --list shows every file)"
            )
        if self.split and self.name == "independent":
            raise ValueError("--split selects benchmark or demo files; use --area for independent")
        if self.area and self.name in ("benchmark", "demo"):
            raise ValueError(f"--area selects independent files, not {self.name} ones")
        return self
