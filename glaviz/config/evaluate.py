"""``glaviz evaluate`` options."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from glaviz.config.base import CommandConfig, overwrite_field, skip_existing_field


class EvaluateConfig(CommandConfig):
    """What to score: a predictions file, or a deployed map against reference outlines."""

    OUTPUT_FIELDS: ClassVar[frozenset[str]] = frozenset({"json_output"})

    predictions: Path | None = Field(
        None, description="Predictions HDF5 of glaviz predict (needs the 'true' datasets)."
    )
    prediction: Path | None = Field(
        None, description="Outlines raster to score instead (0/1, nodata excluded)."
    )
    truth: Path | None = Field(
        None, description="Reference outlines for --prediction: raster, or .gpkg/.shp/.geojson."
    )
    #: ``--scores FILE`` on the command line (``--json FILE`` before it clashed with the global
    #: flag); the key stays ``json_output`` so config files and run records keep working.
    json_output: Path | None = Field(
        None, description="Also write the scores as JSON here ('-': JSON on stdout only)."
    )
    overwrite: bool = overwrite_field("an existing --scores file")
    skip_existing: bool = skip_existing_field("the --scores file")

    @model_validator(mode="after")
    def _one_source(self) -> EvaluateConfig:
        if self.predictions is not None and (self.prediction is not None or self.truth):
            raise ValueError(
                f"give either a predictions file ({self.predictions}) or --prediction/--truth, "
                "not both"
            )
        if self.predictions is None and (self.prediction is None or self.truth is None):
            given = (
                "--prediction" if self.prediction is not None else "--truth" if self.truth else None
            )
            raise ValueError(
                (f"{given} needs its partner; " if given else "nothing to evaluate; ")
                + "use glaviz evaluate PREDICTIONS.h5, or glaviz evaluate --prediction "
                "OUTLINES.tif --truth TRUTH.gpkg"
            )
        return self

    @property
    def to_stdout(self) -> bool:
        """``--scores -``: the scores go to stdout as JSON instead of a file."""
        return self.json_output is not None and str(self.json_output) == "-"

    def output_files(self) -> list[Path]:
        return [] if self.json_output is None or self.to_stdout else [self.json_output]
