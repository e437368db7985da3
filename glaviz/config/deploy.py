"""``glaviz deploy`` options."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from glaviz.config.base import (
    CommandConfig,
    overwrite_field,
    parse_feature_list,
    skip_existing_field,
)

Precision = Literal["float32", "bfloat16", "float16"]

#: Largest median filter for outlines. Its cost grows with the square of the size (a 101-pixel
#: median takes about 15 s per million pixels on one core) and it erases every glacier narrower
#: than about half of it, so larger sizes are mistakes; deploy also refuses a size beyond the
#: scene's short side (scipy's filter fails there with an empty MemoryError).
MAX_SMOOTHING = 101
#: Largest ``--batch-size`` of any command: far above what fits a GPU for the published model
#: (9 windows in 4 GiB of activations), low enough that choosing among the sizes up to it is
#: instant. Deploy uses at most as many as the scene has windows.
MAX_BATCH_SIZE = 4096


#: Default ``--roi-buffer`` around a reference inventory's glaciers, in metres: what a glacier
#: can advance in decades, plus the context of a window (docs/deploy.md argues it).
REFERENCE_BUFFER_M = 2000.0


def default_outdir(stack: Path) -> Path:
    """``<stack stem>.glaviz/`` beside the stack: where deploy writes when no ``-o`` is given."""
    return stack.with_name(f"{stack.stem}.glaviz")


class DeployConfig(CommandConfig):
    """Everything one deploy run depends on, besides the data and the weights' contents."""

    NAME_OR_PATH_FIELDS: ClassVar[frozenset[str]] = frozenset({"weights", "calibration"})

    stack: Path = Field(description="Feature stack GeoTIFF made by glaviz features.")
    weights: str = Field(
        description="Registry name (global, hma, …), .h5 checkpoint or .glaviz bundle."
    )
    output: Path | None = Field(
        None, description="Output folder (default: <stack stem>.glaviz/ beside the stack)."
    )
    features: tuple[str, ...] | None = Field(
        None,
        description="Feature groups of a .h5 checkpoint, in model order (default: read from the "
        "weights, else optical,dem).",
    )
    region_vector: Path | None = Field(
        None, description="Region vector JSON for a region-encoding model (glaviz optimise-bias)."
    )
    coordinate_encoding: bool = Field(
        False, description="Feed sin/cos of each window's latitude and longitude."
    )
    calibration: str | None = Field(
        None,
        description="Confidence calibration: a CAL.json, a packaged name, or 'none'. Default: the "
        "model's own, if it has one.",
    )
    smoothing: int = Field(
        0,
        ge=0,
        le=MAX_SMOOTHING,
        description=f"Median filter size for outlines (0: off; at most {MAX_SMOOTHING} and the "
        "scene's short side).",
    )
    blend: Literal["auto", "gaussian", "taper"] = Field(
        "auto",
        description="Weights of overlapping windows: gaussian is the published blend; taper "
        "fades each window out towards its edge, removing window seams; auto: gaussian for "
        "published weights (as published), taper for glaviz's own models (bundles).",
    )
    tta: bool = Field(False, description="Average the 8 flips and rotations of each window.")
    mc: int = Field(0, ge=0, description="Monte Carlo dropout passes to average (0: off).")
    batch_size: int | None = Field(
        None,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Windows per model call (default: as many as the activation-memory budget "
        f"allows; at most {MAX_BATCH_SIZE}, and never more than the scene's windows).",
    )
    activation_budget_mb: float | None = Field(
        None,
        gt=0,
        description="Activation memory per model call in MiB, which sets the batch size when "
        "batch_size is not given (default: 512 on CPU, 4096 on GPU).",
    )
    precision: Precision = Field(
        "float32",
        description="float32 (published numbers), bfloat16 (CPUs with AVX512-BF16/AMX, GPUs), "
        "float16 (GPUs).",
    )
    roi: Path | None = Field(
        None,
        description="Region of interest: a vector file (GeoPackage, shapefile, GeoJSON …) or a "
        "raster mask (non-zero = inside). Only windows that meet it are computed; pixels outside "
        "it are written as not mapped (the outlines' nodata).",
    )
    roi_buffer: float | None = Field(
        None,
        ge=0,
        description="Grow the region of interest by this many metres (default: 0 for roi, "
        f"{REFERENCE_BUFFER_M:g} for roi_from_reference).",
    )
    roi_from_reference: Path | None = Field(
        None,
        description="Region of interest from an RGI-style glacier inventory: its glaciers "
        f"grown by roi_buffer (default {REFERENCE_BUFFER_M:g} m).",
    )
    probabilities: bool = Field(False, description="Also write probabilities.tif.")
    vector: bool = Field(True, description="Write the outlines.gpkg polygons.")
    quicklook: bool = Field(True, description="Write quicklook.png.")
    overwrite: bool = overwrite_field("outputs already in the folder")
    skip_existing: bool = skip_existing_field("the output folder")

    @field_validator("features", mode="before")
    @classmethod
    def _parse_features(cls, value: object) -> object:
        return parse_feature_list(value)

    @model_validator(mode="after")
    def _one_location(self) -> DeployConfig:
        if self.region_vector is not None and self.coordinate_encoding:
            raise ValueError(
                "use either region_vector (--region-vector) or coordinate_encoding, not both"
            )
        return self

    @model_validator(mode="after")
    def _one_roi(self) -> DeployConfig:
        if self.roi is not None and self.roi_from_reference is not None:
            raise ValueError(
                "use either roi (--roi) or roi_from_reference (--roi-from-reference), not both; "
                "merge the two regions into one file if you need both"
            )
        if self.roi_buffer is not None and self.roi is None and self.roi_from_reference is None:
            raise ValueError(
                "roi_buffer (--roi-buffer) grows a region of interest: give --roi FILE or "
                "--roi-from-reference FILE with it"
            )
        return self

    @property
    def roi_buffer_m(self) -> float:
        """The buffer around the region of interest in metres, defaulted per source."""
        if self.roi_buffer is not None:
            return float(self.roi_buffer)
        return REFERENCE_BUFFER_M if self.roi_from_reference is not None else 0.0

    def input_files(self) -> dict[str, Path]:
        """The inputs, with a shapefile region's side files (.dbf, .shx, .prj …): editing its
        attributes or projection changes only those, and must make --skip-existing recompute."""
        found = super().input_files()
        for name in ("roi", "roi_from_reference"):
            path = found.get(name)
            if path is not None and path.suffix.lower() == ".shp" and path.parent.is_dir():
                for side in sorted(path.parent.glob(f"{path.stem}.*")):
                    if side != path and side.is_file():
                        found[f"{name}:{side.suffix.lower().lstrip('.')}"] = side
        return found

    @property
    def outdir(self) -> Path:
        """The output folder, defaulted beside the stack."""
        return self.output if self.output is not None else default_outdir(self.stack)

    def output_files(self) -> list[Path]:
        """run.json is renamed into place last, so with it the outputs are complete."""
        return [self.outdir / "outlines.tif", self.outdir / "run.json"]

    def record_path(self) -> Path:
        return self.outdir / "run.json"
