"""``glaviz change`` options: the one definition of the command's settings.

Dates given on the command line are ``INPUT=YYYY-MM-DD`` strings, so that the same list works
in a config file and after ``--date``; they are checked here, before any input is opened, and
matched against the inputs by the engine (an input may be named by its path or its file name).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from glaviz.config.base import CommandConfig, overwrite_field, skip_existing_field

Uncertainty = Literal["buffer", "confidence", "both"]

#: Everything ``glaviz change`` writes into its output folder; ``run.json`` is committed last.
CHANGE_OUTPUTS: tuple[str, ...] = (
    "change.gpkg",
    "change.csv",
    "change.tif",
    "change.png",
    "run.json",
)


def parse_date_option(text: str) -> tuple[str, dt.date]:
    """``INPUT=YYYY-MM-DD`` → (input as written, date); ValueError in words otherwise."""
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise ValueError(f"--date takes INPUT=YYYY-MM-DD, got {text!r}")
    try:
        return name, dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"--date {text!r}: {value!r} is not a date (YYYY-MM-DD)") from None


class ChangeConfig(CommandConfig):
    """Everything one ``glaviz change`` run depends on, besides the data."""

    OUTPUT_FIELDS: ClassVar[frozenset[str]] = frozenset({"output"})

    inputs: list[Path] = Field(
        description="Outline GeoTIFFs (1 ice, 0 no ice, nodata unobserved), deploy output "
        "folders, inventory GeoPackages or batch output roots; two dates at least."
    )
    output: Path = Field(description="Output folder (change.gpkg, change.csv, change.tif, …).")
    dates: list[str] = Field(
        [],
        description="INPUT=YYYY-MM-DD: the date of an input whose run record or inventory "
        "has none (or to override it). Repeat for several inputs.",
    )
    reference: Path | None = Field(
        None,
        description="Reference inventory (e.g. RGI) whose glaciers are the fixed units measured "
        "at every date, along its divides.",
    )
    reference_id: str | None = Field(
        None,
        description="Column of the reference (or of inventory inputs) holding the glacier id "
        "(default: rgi_id, RGIId, GLIMSId, glac_id or id, whichever exists).",
    )
    uncertainty: Uncertainty = Field(
        "both",
        description="buffer: perimeter × buffer × pixel size (Paul et al. 2013); confidence: "
        "area of low-confidence pixels in and around each glacier; both.",
    )
    buffer_px: float = Field(
        0.5, gt=0, description="Buffer of the buffer method, in pixels (Paul et al. 2013: 0.5)."
    )
    min_area_km2: float = Field(
        0.0,
        ge=0,
        description="Leave out glaciers smaller than this at both dates (km²); 0 keeps all.",
    )
    overwrite: bool = overwrite_field("outputs already in the folder")
    skip_existing: bool = skip_existing_field("the output folder")

    @field_validator("dates")
    @classmethod
    def _dates_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_date_option(text)
        return value

    @model_validator(mode="after")
    def _inputs_given(self) -> ChangeConfig:
        if not self.inputs:
            raise ValueError("give at least two inputs (or one batch output root with two dates)")
        return self

    def date_overrides(self) -> list[tuple[str, dt.date]]:
        """The ``--date`` options as (input as written, date)."""
        return [parse_date_option(text) for text in self.dates]

    def input_files(self) -> dict[str, Path]:
        """Inputs for the run record: each input (a folder by its own state) and the reference."""
        found = {f"input{i}": path for i, path in enumerate(self.inputs)}
        for key, path in list(found.items()):
            if path.is_dir():
                # A folder's own mtime changes when files are added or replaced in it; the
                # records inside tell the rest.
                for name in ("run.json", "summary.csv"):
                    if (path / name).is_file():
                        found[f"{key}_{name}"] = path / name
        if self.reference is not None:
            found["reference"] = self.reference
        return found

    def output_files(self) -> list[Path]:
        """run.json is renamed into place last, so with it the outputs are complete."""
        return [self.output / name for name in CHANGE_OUTPUTS]

    def record_path(self) -> Path:
        return self.output / "run.json"
