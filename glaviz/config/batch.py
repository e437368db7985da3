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

    [[scene]]
    id = "hma-2022"
    optical = "raw/hma/s2.tif"
    elevation = "raw/hma/dem.tif"
    weights = "hma"                 # per-scene override

``[deploy]`` and ``[features]`` take the same field names as :class:`DeployConfig` and
:class:`FeaturesConfig` (the one definition of each command's options); ``stack`` and ``output``
are set per scene by the batch. Relative paths are relative to the job file.
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

from glaviz.config.base import CommandConfig
from glaviz.config.deploy import DeployConfig
from glaviz.config.features import RASTER_INPUTS, FeaturesConfig
from glaviz.config.loading import error_summary
from glaviz.errors import ConfigError

#: Raw inputs of ``glaviz features``, by the features config's field names.
RAW_INPUTS: tuple[str, ...] = RASTER_INPUTS
#: Scene fields that are paths, resolved against the job file's folder.
SCENE_PATHS: tuple[str, ...] = ("stack", *RAW_INPUTS, "region_vector")
#: Fields of [deploy] and [features] set by the batch itself for every scene.
BATCH_OWNED: frozenset[str] = frozenset({"stack", "output", "overwrite"})

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
    date: dt.date | None = Field(None, description="Acquisition date (YYYY-MM-DD).")

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

    @model_validator(mode="after")
    def _one_source(self) -> SceneSpec:
        raw = [n for n in RAW_INPUTS if getattr(self, n) is not None]
        if self.stack is not None and raw:
            raise ValueError(
                f"scene {self.id!r} gives both a stack and raw inputs ({', '.join(raw)}); "
                "give one of them"
            )
        return self

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
    scene: list[SceneSpec] = Field(default_factory=list, description="Inline scenes.")
    manifest: Path | None = Field(None, description="CSV manifest: one scene per row.")

    @field_validator("deploy", "features")
    @classmethod
    def _known_fields(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        owned = sorted(BATCH_OWNED & set(value))
        if owned:
            raise ValueError(
                f"{', '.join(owned)} cannot be set here: the batch sets them for each scene "
                "(stack and output per scene, --force to recompute)"
            )
        model = DeployConfig if info.field_name == "deploy" else FeaturesConfig
        unknown = sorted(set(value) - set(model.model_fields))
        if unknown:
            known = ", ".join(sorted(set(model.model_fields) - BATCH_OWNED))
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
        for name in ("weights", "region_vector", "calibration"):
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

    def features_config(self, spec: SceneSpec, *, output: Path) -> FeaturesConfig | None:
        """The features settings of a raw-input scene (None for a scene given as a stack)."""
        if spec.stack is not None:
            return None
        values: dict[str, Any] = {**self.features, **spec.raw_inputs()}
        values.update(output=output, overwrite=True)
        missing = [n for n in ("optical", "elevation") if values.get(n) is None]
        if missing:
            raise ConfigError(
                f"scene {spec.id!r} has neither a stack nor {' and '.join(missing)}; give "
                "stack = … or the raw inputs optical = … and elevation = …"
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
    for section in ("deploy", "features"):
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
    for name in (*RAW_INPUTS, "region_vector"):
        if isinstance(out.get(name), str):
            out[name] = _under(base, out[name])
    for name in ("weights", "calibration"):
        if isinstance(out.get(name), str) and _looks_like_path(out[name]):
            out[name] = _under(base, out[name])
    return out


def _looks_like_path(value: str) -> bool:
    """A weights/calibration value that names a file rather than a registry entry."""
    return any(c in value for c in "/\\") or value.endswith((".h5", ".glaviz", ".json", ".keras"))
