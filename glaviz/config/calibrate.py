"""``glaviz calibrate`` options."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from glaviz.config.base import CommandConfig, overwrite_field, skip_existing_field

#: Largest ``--bins``: ten times the published 100, a confidence resolution of 0.001. The
#: kernel-ridge fit solves one system over every non-empty bin (its matrix has bins² entries), and
#: finer bins hold too few pixels for an accuracy worth fitting.
MAX_BINS = 1000


class CalibrateConfig(CommandConfig):
    """Validation predictions in, a calibration JSON (and optionally a diagram) out."""

    OUTPUT_FIELDS: ClassVar[frozenset[str]] = frozenset({"output", "plot"})

    predictions: Path = Field(
        description="Predictions HDF5 of glaviz predict on a validation split (with truth)."
    )
    output: Path = Field(description="Calibration JSON to write (CAL.json).")
    plot: Path | None = Field(
        None, description="Also draw the reliability diagram, before and after, as a PNG."
    )
    bins: int = Field(
        100,
        ge=2,
        le=MAX_BINS,
        description=f"Equal confidence bins of the diagram and the fit (at most {MAX_BINS}, and "
        "no more than the file's pixels).",
    )
    method: Literal["kernel-ridge", "isotonic"] = Field(
        "kernel-ridge",
        description="kernel-ridge (the published procedure) or isotonic (a monotone table).",
    )
    overwrite: bool = overwrite_field()
    skip_existing: bool = skip_existing_field()

    def output_files(self) -> list[Path]:
        return [self.output] + ([self.plot] if self.plot is not None else [])
