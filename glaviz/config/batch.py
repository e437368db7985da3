"""``glaviz batch`` job files: the output root, shared settings and the scenes.

A job is a TOML (or JSON) file::

    output = "out"                  # OUTPUT root; each scene writes OUTPUT/<id>/
    manifest = "scenes.csv"         # optional CSV, one scene per row, columns = scene fields

    [deploy]                        # defaults for every scene: glaviz deploy's options
    weights = "global"
    smoothing = 3

    [features]                      # defaults for scenes built from raw inputs
    slope = "shared/slope.tif"      # (any glaviz features input may be shared)

    [[scene]]
    id = "alps-2023"
    stack = "stacks/alps.tif"
    date = 2023-08-14

    [[scene]]                       # a region and a year: acquired, then mapped
    id = "aletsch-2023"
    bbox = [7.95, 46.48, 8.10, 46.58]
    year = 2023

    [[scene]]
    id = "hma-2022"
    roi_from_reference = "rgi/13_asia_central.gpkg"   # map only near known glaciers
    optical = "raw/hma/s2.tif"
    elevation = "raw/hma/dem.tif"
    weights = "hma"                 # per-scene override

``[deploy]``, ``[features]`` and ``[acquire]`` take the same field names as
:class:`DeployConfig`, :class:`FeaturesConfig` and :class:`AcquireConfig` (the one definition of
each command's options); ``stack`` and ``output`` are set per scene by the batch. A scene that
gives a region (``bbox`` or ``aoi``, with ``year``/``season`` or ``dates``) is acquired into
OUTPUT/<id>/acquire/ first; ``[acquire]`` may hold the region or the window shared by several
scenes (one region, a scene per year). Relative paths are relative to the job file.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from glaviz.config.acquire import AcquireConfig, parse_bbox
from glaviz.config.base import CommandConfig
from glaviz.config.deploy import DeployConfig
from glaviz.config.features import RASTER_INPUTS, FeaturesConfig
from glaviz.config.loading import error_summary
from glaviz.errors import ConfigError

#: Raw inputs of ``glaviz features``, by the features config's field names.
RAW_INPUTS: tuple[str, ...] = RASTER_INPUTS
#: Scene fields that are paths, resolved against the job file's folder.
SCENE_PATHS: tuple[str, ...] = (
    "stack",
    *RAW_INPUTS,
    "region_vector",
    "roi",
    "roi_from_reference",
    "aoi",
)
#: A scene's region of interest: set on a scene, these replace the ones of [deploy] together.
ROI_FIELDS: tuple[str, ...] = ("roi", "roi_buffer", "roi_from_reference")
#: Fields of [deploy] and [features] set by the batch itself for every scene.
BATCH_OWNED: frozenset[str] = frozenset({"stack", "output", "overwrite"})
#: What a scene acquired from a catalogue gives instead of rasters: where and when.
REGION_FIELDS: tuple[str, ...] = ("bbox", "aoi", "year", "season", "dates")
#: Fields of [acquire] that are the batch's own (the folder, and no search-only scenes).
ACQUIRE_OWNED: frozenset[str] = frozenset({"output", "overwrite", "skip_existing", "search_only"})
#: The folder inside OUTPUT/<id>/ that an acquired scene's acquisition is written to.
ACQUIRE_FOLDER = "acquire"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: What ``glaviz batch`` writes at the top of OUTPUT, beside the scene folders: a scene id may not
#: take these names (compared without case, for case-insensitive file systems).
JOB_OUTPUT_NAMES: tuple[str, ...] = ("summary.csv", "outlines.gpkg")


class SceneSpec(CommandConfig):
    """One scene of a job: a stack, or the raw inputs ``glaviz features`` compiles into one."""

    id: str = Field(description="Scene id; also the name of its folder OUTPUT/<id>/.")
    stack: Path | None = Field(None, description="Feature stack GeoTIFF (glaviz features).")
    optical: Path | None = Field(None, description="Optical raster: 6 TOA reflectance bands.")
    elevation: Path | None = Field(None, description="DEM, 1 band, metres.")
    slope: Path | None = Field(None, description="Slope in degrees (default: from the DEM).")
    co_pol_sar: Path | None = Field(None, description="Co-pol sigma0, 2 bands, linear.")
    cross_pol_sar: Path | None = Field(None, description="Cross-pol sigma0, 2 bands, linear.")
    in_sar: Path | None = Field(None, description="InSAR coherence, 2 bands.")
    thermal: Path | None = Field(None, description="Thermal band, 1 band, K.")
    weights: str | None = Field(None, description="Weights for this scene (overrides [deploy]).")
    region_vector: Path | None = Field(None, description="Region vector JSON for this scene.")
    calibration: str | None = Field(None, description="Calibration for this scene.")
    roi: Path | None = Field(
        None, description="Region of interest of this scene (vector file or raster mask)."
    )
    roi_buffer: float | None = Field(
        None, ge=0, description="Buffer around this scene's region of interest, in metres."
    )
    roi_from_reference: Path | None = Field(
        None, description="Glacier inventory whose buffered glaciers are this scene's region."
    )
    date: dt.date | None = Field(None, description="Acquisition date (YYYY-MM-DD).")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="Region to acquire, W,S,E,N in degrees (glaviz acquire --bbox)."
    )
    aoi: Path | None = Field(None, description="Region to acquire as a vector file.")
    year: int | None = Field(None, description="Year to acquire (glaviz acquire --year).")
    season: str | None = Field(None, description="Window within the year, MM-DD/MM-DD.")
    dates: str | None = Field(None, description="Window to acquire, YYYY-MM-DD/YYYY-MM-DD.")

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not _ID.match(value) or value in {".", ".."}:
            raise ValueError(
                f"scene id {value!r} must start with a letter or digit and hold only letters, "
                "digits, '.', '_' and '-' (it names the folder OUTPUT/<id>/)"
            )
        if value.lower() in JOB_OUTPUT_NAMES:
            raise ValueError(
                f"scene id {value!r} is the name of a file glaviz batch writes in OUTPUT "
                f"({', '.join(JOB_OUTPUT_NAMES)}); choose another id"
            )
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # Empty CSV cells mean "not given".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("bbox", mode="before")
    @classmethod
    def _parse_bbox(cls, value: object) -> object:
        return parse_bbox(value)  # a manifest cell holds "W,S,E,N"

    @model_validator(mode="after")
    def _one_source(self) -> SceneSpec:
        raw = [n for n in RAW_INPUTS if getattr(self, n) is not None]
        if self.stack is not None and raw:
            raise ValueError(
                f"scene {self.id!r} gives both a stack and raw inputs ({', '.join(raw)}); "
                "give one of them"
            )
        if self.gives_region() and (self.stack is not None or raw):
            given = "a stack" if self.stack is not None else "raw inputs"
            raise ValueError(
                f"scene {self.id!r} gives both a region to acquire and {given}; give one of them"
            )
        return self

    def gives_region(self) -> bool:
        """True when the scene names its own area to acquire (bbox or aoi)."""
        return self.bbox is not None or self.aoi is not None

    def gives_rasters(self) -> bool:
        """True when the scene brings its own imagery (a stack or raw inputs)."""
        return self.stack is not None or any(getattr(self, n) is not None for n in RAW_INPUTS)

    def raw_inputs(self) -> dict[str, Path]:
        """The raw ``features`` inputs this scene gives, by field name."""
        return {n: getattr(self, n) for n in RAW_INPUTS if getattr(self, n) is not None}


class JobConfig(CommandConfig):
    """A ``glaviz batch`` job: where results go, shared defaults, and the scenes."""

    output: Path = Field(description="Output root; scene <id> writes OUTPUT/<id>/.")
    deploy: dict[str, Any] = Field(
        default_factory=dict, description="glaviz deploy options shared by every scene."
    )
    features: dict[str, Any] = Field(
        default_factory=dict, description="glaviz features inputs shared by raw-input scenes."
    )
    acquire: dict[str, Any] = Field(
        default_factory=dict,
        description="glaviz acquire options shared by scenes acquired from a region.",
    )
    scene: list[SceneSpec] = Field(default_factory=list, description="Inline scenes.")
    manifest: Path | None = Field(None, description="CSV manifest: one scene per row.")

    @field_validator("deploy", "features", "acquire")
    @classmethod
    def _known_fields(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        batch_owned = ACQUIRE_OWNED if info.field_name == "acquire" else BATCH_OWNED
        owned = sorted(batch_owned & set(value))
        if owned:
            raise ValueError(
                f"{', '.join(owned)} cannot be set here: the batch sets them for each scene "
                "(stack and output per scene, --force to recompute)"
            )
        model = {"deploy": DeployConfig, "features": FeaturesConfig}.get(
            str(info.field_name), AcquireConfig
        )
        unknown = sorted(set(value) - set(model.model_fields))
        if unknown:
            known = ", ".join(sorted(set(model.model_fields) - batch_owned))
            raise ValueError(f"unknown option {', '.join(unknown)}; the options are {known}")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> JobConfig:
        seen: set[str] = set()
        for spec in self.scene:
            if spec.id in seen:
                raise ValueError(f"scene id {spec.id!r} appears twice; ids must be unique")
            seen.add(spec.id)
        return self

    def deploy_config(self, spec: SceneSpec, *, stack: Path, outdir: Path) -> DeployConfig:
        """The resolved deploy settings of one scene: [deploy], then the scene's overrides."""
        values: dict[str, Any] = {"vector": True, **self.deploy}
        if any(getattr(spec, name) is not None for name in ROI_FIELDS):
            # The scene's own region replaces the job's, buffer included.
            values = {k: v for k, v in values.items() if k not in ROI_FIELDS}
        for name in ("weights", "region_vector", "calibration", *ROI_FIELDS):
            if getattr(spec, name) is not None:
                values[name] = getattr(spec, name)
        values.update(stack=stack, output=outdir, overwrite=True)
        if "weights" not in values:
            raise ConfigError(
                f"scene {spec.id!r} has no weights; set weights in [deploy] or on the scene"
            )
        if not values["vector"]:
            raise ConfigError(
                "[deploy] vector = false: the batch merges every scene's polygons into "
                "OUTPUT/outlines.gpkg, so it needs them; remove vector from [deploy]"
            )
        try:
            return DeployConfig(**values)
        except ValidationError as exc:
            raise ConfigError(f"scene {spec.id!r}: {error_summary(exc, DeployConfig)}") from None

    def acquires(self, spec: SceneSpec) -> bool:
        """True for a scene built from a region: its own bbox/aoi, or [acquire]'s region for a
        scene that brings no imagery of its own."""
        if spec.gives_region():
            return True
        shared = any(self.acquire.get(n) is not None for n in ("bbox", "aoi"))
        return shared and not spec.gives_rasters()

    def acquire_config(self, spec: SceneSpec, *, output: Path) -> AcquireConfig | None:
        """The acquisition of a scene built from a region (None for a scene with imagery):
        [acquire], then the scene's region and window."""
        if not self.acquires(spec):
            return None
        values: dict[str, Any] = dict(self.acquire)
        given = {n: getattr(spec, n) for n in REGION_FIELDS if getattr(spec, n) is not None}
        if {"bbox", "aoi"} & set(given):  # the scene's region replaces the shared one
            values = {k: v for k, v in values.items() if k not in ("bbox", "aoi")}
        # The scene's window replaces the shared one; a shared season stays with a scene's year.
        if "dates" in given:
            values = {k: v for k, v in values.items() if k not in ("year", "season", "dates")}
        elif "year" in given:
            values = {k: v for k, v in values.items() if k != "dates"}
        values.update(given, output=output, overwrite=True)
        try:
            return AcquireConfig(**values)
        except ValidationError as exc:
            raise ConfigError(f"scene {spec.id!r}: {error_summary(exc, AcquireConfig)}") from None

    def features_config(self, spec: SceneSpec, *, output: Path) -> FeaturesConfig | None:
        """The features settings of a raw-input scene (None for a scene given as a stack, or
        acquired: glaviz acquire writes the stack itself)."""
        if spec.stack is not None or self.acquires(spec):
            return None
        values: dict[str, Any] = {**self.features, **spec.raw_inputs()}
        values.update(output=output, overwrite=True)
        if spec.date is not None:  # dated on the stack too, for deploy's record and change
            values["date"] = spec.date
        missing = [n for n in ("optical", "elevation") if values.get(n) is None]
        if missing:
            raise ConfigError(
                f"scene {spec.id!r} has neither a stack nor {' and '.join(missing)}; give "
                "stack = …, the raw inputs optical = … and elevation = …, or a region to "
                "acquire (bbox = [W, S, E, N] and year = …)"
            )
        try:
            return FeaturesConfig(**values)
        except ValidationError as exc:
            raise ConfigError(f"scene {spec.id!r}: {error_summary(exc, FeaturesConfig)}") from None


def load_job(path: str | Path) -> tuple[JobConfig, list[SceneSpec]]:
    """Read and validate a job file and its manifest; every path made absolute.

    Returns the job and its scenes (inline ones first, then the manifest's rows).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"job file {path} is not valid TOML/JSON: {exc}") from None
    base = path.resolve().parent
    if isinstance(raw.get("output"), str):
        raw["output"] = _under(base, raw["output"])
    if isinstance(raw.get("manifest"), str):
        raw["manifest"] = _under(base, raw["manifest"])
    for section in ("deploy", "features", "acquire"):
        if isinstance(raw.get(section), dict):
            raw[section] = _resolve_section(raw[section], base)
    if isinstance(raw.get("scene"), list):
        raw["scene"] = [_resolve_scene(s, base) if isinstance(s, dict) else s for s in raw["scene"]]
    try:
        job = JobConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(f"job file {path}: {error_summary(exc, JobConfig)}") from None
    scenes = list(job.scene)
    if job.manifest is not None:
        scenes += read_manifest(job.manifest)
    ids = [s.id for s in scenes]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"job file {path}: scene ids appear twice: {', '.join(dupes)}")
    if not scenes:
        raise ConfigError(f"job file {path} lists no scenes; add [[scene]] tables or a manifest")
    return job, scenes


def read_manifest(path: Path) -> list[SceneSpec]:
    """Scenes from a CSV manifest: a header of scene field names, one row per scene.

    Relative paths in the manifest are relative to the manifest's folder.
    """
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    base = path.resolve().parent
    scenes = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        values = {k.strip(): v.strip() for k, v in row.items() if k is not None and v is not None}
        try:
            scenes.append(SceneSpec(**_resolve_scene(values, base)))
        except ValidationError as exc:
            raise ConfigError(
                f"manifest {path} line {number}: {error_summary(exc, SceneSpec)}"
            ) from None
    return scenes


def _under(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _resolve_scene(values: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(values)
    for name in SCENE_PATHS:
        if isinstance(out.get(name), str) and out[name].strip():
            out[name] = _under(base, out[name])
    weights = out.get("weights")
    if isinstance(weights, str) and weights.strip() and _looks_like_path(weights):
        out["weights"] = _under(base, weights)
    return out


def _resolve_section(values: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(values)
    for name in (*RAW_INPUTS, "region_vector", "roi", "roi_from_reference", "aoi"):
        if isinstance(out.get(name), str):
            out[name] = _under(base, out[name])
    for name in ("weights", "calibration"):
        if isinstance(out.get(name), str) and _looks_like_path(out[name]):
            out[name] = _under(base, out[name])
    return out


def _looks_like_path(value: str) -> bool:
    """A weights/calibration value that names a file rather than a registry entry."""
    return any(c in value for c in "/\\") or value.endswith((".h5", ".glaviz", ".json", ".keras"))
