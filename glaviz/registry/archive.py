"""The published datasets on the NIRD Research Data Archive, as data: files, sizes, md5 sums.

Read from ``glaviz/data/datasets.toml`` and validated once. :func:`select` turns a dataset name
plus ``--split`` / ``--area`` into the files to fetch; nothing here touches the network.
"""

from __future__ import annotations

import functools
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from glaviz.errors import ConfigError
from glaviz.registry.cache import plain_file_name

DatasetName = Literal["benchmark", "demo", "independent"]
Kind = Literal["tiles", "features", "reference"]

DATASET_NAMES: tuple[str, ...] = ("benchmark", "demo", "independent")
SPLITS: tuple[str, ...] = ("train", "val", "test")
AREAS: tuple[str, ...] = ("swiss_alps", "sc1", "alaska", "southern_canada")


class ArchiveFile(BaseModel):
    """One file of the archive and what the archive's table of contents says about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dataset: DatasetName
    split: Literal["train", "val", "test"] | None = None
    area: Literal["swiss_alps", "sc1", "alaska", "southern_canada"] | None = None
    kind: Kind
    size: int = Field(alias="bytes", gt=0)
    md5: str

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_file_name(value)

    @field_validator("md5")
    @classmethod
    def _check_md5(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{32}", value):
            raise ValueError("expected 32 lowercase hexadecimal digits")
        return value

    @model_validator(mode="after")
    def _selector(self) -> ArchiveFile:
        if self.dataset == "independent" and (self.area is None or self.split is not None):
            raise ValueError("an independent file has an area and no split")
        if self.dataset != "independent" and (self.split is None or self.area is not None):
            raise ValueError(f"a {self.dataset} file has a split and no area")
        return self

    @property
    def part(self) -> str:
        """The split or area that selects this file within its dataset."""
        return self.split or self.area or ""


class Archive(BaseModel):
    """The archive record: where it is, its licence, and its files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(alias="schema")
    doi: str
    license: str
    version: str
    landing_page: str
    base_url: str
    table_of_contents: str
    total_bytes: int
    confirmed: bool
    evidence: str
    files: tuple[ArchiveFile, ...] = Field(alias="file")

    @model_validator(mode="after")
    def _consistent(self) -> Archive:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("a file is listed twice")
        total = sum(f.size for f in self.files)
        if total != self.total_bytes:
            raise ValueError(
                f"the files add up to {total} bytes, not total_bytes {self.total_bytes}"
            )
        return self

    def url(self, file: ArchiveFile) -> str:
        return f"{self.base_url.rstrip('/')}/{file.name}"


@functools.cache
def load_archive(path: Path | None = None) -> Archive:
    """The packaged archive record (``glaviz/data/datasets.toml``), validated; cached."""
    path = path or Path(str(resources.files("glaviz").joinpath("data", "datasets.toml")))
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
        return Archive.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the dataset registry {path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid dataset registry {path}: {problems}") from None


def select(
    name: str | None,
    *,
    splits: tuple[str, ...] = (),
    areas: tuple[str, ...] = (),
    archive: Archive | None = None,
) -> list[ArchiveFile]:
    """The files of dataset ``name`` (all datasets when None), narrowed by splits or areas."""
    archive = archive or load_archive()
    if name is not None and name not in DATASET_NAMES:
        raise ConfigError(f"unknown dataset {name!r}; use one of {', '.join(DATASET_NAMES)}")
    chosen = [f for f in archive.files if name is None or f.dataset == name]
    if splits:
        chosen = [f for f in chosen if f.split is None or f.split in splits]
    if areas:
        chosen = [f for f in chosen if f.area is None or f.area in areas]
    return chosen
