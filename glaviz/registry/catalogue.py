"""The registry of published GlaViTU models, and resolution of ``--weights`` / ``--calibration``.

The registry is data (``glaviz/data/registry.toml``), validated once into pydantic models. A user
file named by ``$GLAVIZ_REGISTRY`` is merged over it (to pin a sha256, add a Drive id or a model)
and validated the same way. Every entry owns one cache file named after its published file, so two
models can never share a cached file and load each other's weights by mistake (the torchgeo #4037
failure).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from glaviz.errors import ConfigError
from glaviz.published.groups import GROUP_BANDS, REGIONS, group_bands, parse_features
from glaviz.registry.cache import cached_path, plain_file_name, read_info

logger = logging.getLogger(__name__)

#: A user TOML merged over the packaged registry (same schema; ``[[model]]`` tables by ``name``).
REGISTRY_ENV = "GLAVIZ_REGISTRY"

Strategy = Literal["global", "regional", "finetuning", "region_encoding", "coordinate_encoding"]
LocationEncoding = Literal["none", "region", "coordinate"]

#: Fields an entry may list in ``unconfirmed``.
CONFIRMABLE = frozenset(
    {
        "file",
        "strategy",
        "features",
        "location",
        "region_order",
        "regions",
        "calibration",
        "patch_size",
        "drive_id",
    }
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DRIVE_ID = re.compile(r"^[A-Za-z0-9_-]{10,}$")
_UNKNOWN = {"", "unknown", "none"}


class ModelEntry(BaseModel):
    """One published model: what file it is, what it expects, and how sure we are about it.

    ``sha256`` and ``calibration`` are ``None`` when unknown / absent; the TOML spells that
    ``"unknown"`` / ``"none"`` so that an empty value is never mistaken for a forgotten one.
    ``size`` (bytes) is pinned beside ``sha256`` where the file is known: it is checked before the
    digest, so a wrong file is named as such without hashing it, and ``--list`` can show it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    aliases: tuple[str, ...] = ()
    title: str = ""
    file: str
    strategy: Strategy
    features: tuple[str, ...]
    location: LocationEncoding = "none"
    region_order: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    patch_size: int = Field(default=384, gt=0, multiple_of=16)
    calibration: str | None = None
    sha256: str | None = None
    size: int | None = Field(default=None, gt=0)
    drive_id: str | None = None
    urls: tuple[str, ...] = ()
    packaged: str | None = None
    unconfirmed: tuple[str, ...] = ()
    evidence: str = ""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
            raise ValueError("use lowercase letters, digits and '-' only")
        return value

    @field_validator("file")
    @classmethod
    def _check_file(cls, value: str) -> str:
        return plain_file_name(value, suffixes=(".h5", ".glaviz"))

    @field_validator("features")
    @classmethod
    def _check_features(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return parse_features(list(value))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("region_order", "regions")
    @classmethod
    def _check_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in value if r not in REGIONS]
        if unknown:
            raise ValueError(f"unknown region(s) {', '.join(unknown)}; known: {', '.join(REGIONS)}")
        return value

    @field_validator("sha256", mode="before")
    @classmethod
    def _check_sha256(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().lower() in _UNKNOWN:
                return None
            if not _SHA256.fullmatch(value.strip().lower()):
                raise ValueError("expected 64 hexadecimal digits or 'unknown'")
            return value.strip().lower()
        return value

    @field_validator("size", mode="before")
    @classmethod
    def _check_size(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in _UNKNOWN:
            return None
        return value

    @field_validator("drive_id", mode="before")
    @classmethod
    def _check_drive_id(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().lower() in _UNKNOWN:
                return None
            if not _DRIVE_ID.fullmatch(value.strip()):
                raise ValueError("expected a Google Drive file id (letters, digits, '-', '_')")
            return value.strip()
        return value

    @field_validator("calibration", "packaged", mode="before")
    @classmethod
    def _none_words(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in _UNKNOWN:
            return None
        return value

    @field_validator("unconfirmed")
    @classmethod
    def _check_unconfirmed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - CONFIRMABLE)
        if unknown:
            raise ValueError(f"unknown field name(s) {', '.join(unknown)}")
        return value

    @model_validator(mode="after")
    def _check_location(self) -> ModelEntry:
        if self.location == "region" and not self.region_order:
            raise ValueError("location = 'region' needs region_order")
        if self.location != "region" and self.region_order:
            raise ValueError("region_order is only meaningful with location = 'region'")
        return self

    @property
    def feature_groups(self) -> dict[str, int]:
        """Ordered ``{group: band count}``, the form the model builder and the checkpoint use."""
        return group_bands(self.features)

    @property
    def location_size(self) -> int | None:
        """Length of the location input: one-hot regions plus an 'unknown' slot, or sin/cos × 2."""
        if self.location == "region":
            return len(self.region_order) + 1
        if self.location == "coordinate":
            return 4
        return None

    @property
    def pinned(self) -> bool:
        """True when the registry fixes the file's sha256 (then nothing else is trusted)."""
        return self.sha256 is not None

    @property
    def confirmed(self) -> bool:
        """True when every descriptive field comes from the authors' public code."""
        return not self.unconfirmed

    def is_confirmed(self, field: str) -> bool:
        return field not in self.unconfirmed

    @property
    def names(self) -> tuple[str, ...]:
        """Every spelling that selects this entry: name, aliases, file name and its stem."""
        stem = self.file.removesuffix(".h5")
        return (self.name, *self.aliases, self.file, stem, stem.removesuffix("_weights"))


class DriveFolder(BaseModel):
    """The authors' public Google Drive folder that holds the published weights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    folder_id: str = Field(pattern=_DRIVE_ID.pattern)
    link: str = ""
    evidence: str = ""

    @property
    def url(self) -> str:
        return f"https://drive.google.com/drive/folders/{self.folder_id}"


class Registry(BaseModel):
    """All published models plus where they are published."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(alias="schema")
    drive: DriveFolder
    models: tuple[ModelEntry, ...] = Field(alias="model")

    @model_validator(mode="after")
    def _check_unique(self) -> Registry:
        seen: dict[str, str] = {}
        files: set[str] = set()
        for entry in self.models:
            if entry.file in files:
                raise ValueError(
                    f"file {entry.file} is used by two entries; cache files must differ"
                )
            files.add(entry.file)
            for spelling in entry.names:
                key = spelling.lower()
                if seen.get(key, entry.name) != entry.name:
                    raise ValueError(f"{spelling!r} names both {seen[key]!r} and {entry.name!r}")
                seen[key] = entry.name
        return self

    def get(self, name: str) -> ModelEntry | None:
        """The entry called ``name`` (any alias or the published file name, any case), else None."""
        key = name.strip().lower()
        for entry in self.models:
            if key in (n.lower() for n in entry.names):
                return entry
        return None

    def require(self, name: str) -> ModelEntry:
        """Like :meth:`get`; an unknown name is a :class:`ConfigError` listing the known ones."""
        entry = self.get(name)
        if entry is None:
            raise ConfigError(
                f"unknown model {name!r}; known models are {', '.join(self.names())} "
                "(see: glaviz fetch-weights --list)"
            )
        return entry

    def names(self) -> list[str]:
        return [entry.name for entry in self.models]


def _data_file(*parts: str) -> Path:
    # The package is installed as plain files (wheel or editable), so a real path always exists.
    return Path(str(resources.files("glaviz").joinpath("data", *parts)))


def load_registry(path: Path | None = None) -> Registry:
    """Read and validate the registry (the packaged one unless ``path`` is given); cached.

    ``$GLAVIZ_REGISTRY`` names a user TOML merged over it. A broken registry is a packaging bug or
    a bad user file: either way a :class:`ConfigError` that names every invalid field, not a
    traceback.
    """
    override = os.environ.get(REGISTRY_ENV, "").strip()
    user = Path(override).expanduser() if override else None
    # The user file's size and time are part of the cache key: an edited override is re-read.
    stamp = None
    if user is not None and user.is_file():
        stat = user.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    return _load(path or _data_file("registry.toml"), user, stamp)


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None


def merge_registry(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: tables merge key by key, ``[[model]]`` entries by ``name``.

    An override entry whose ``name`` is new adds a model; one naming an existing model replaces
    only the fields it gives (``sha256 = "…"`` pins a digest and keeps everything else).
    """
    merged = {k: v for k, v in base.items() if k != "model"}
    for key, value in override.items():
        if key == "model":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    models = [dict(m) for m in base.get("model", [])]
    by_name = {m.get("name"): m for m in models}
    for entry in override.get("model", []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"every [[model]] in ${REGISTRY_ENV} needs a name; got {entry!r}")
        if entry["name"] in by_name:
            by_name[entry["name"]].update(entry)
        else:
            models.append(dict(entry))
            by_name[entry["name"]] = models[-1]
    merged["model"] = models
    return merged


@functools.cache
def _load(path: Path, override: Path | None, stamp: tuple[int, int] | None) -> Registry:
    raw = _read_toml(path, "the model registry")
    where = str(path)
    if override is not None:
        user = _read_toml(override, f"the registry override ${REGISTRY_ENV}")
        raw = merge_registry(raw, user)
        where = f"{path} merged with ${REGISTRY_ENV}={override}"
    try:
        registry = Registry.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid model registry ({where}): {problems}") from None
    missing = [
        f"{e.name} → {e.calibration}"
        for e in registry.models
        if e.calibration and not _data_file("calibration", f"{e.calibration}.json").is_file()
    ]
    if missing:
        raise ConfigError(f"registry ({where}) names calibrations that are not packaged: {missing}")
    return registry


# --------------------------------------------------------------------------------------------------
# Calibrations


def calibration_names() -> list[str]:
    """Names of the packaged confidence calibrations (``deploy --calibration NAME``)."""
    folder = _data_file("calibration")
    return sorted(p.stem for p in folder.glob("*.json"))


def calibration_path(name: str | os.PathLike[str]) -> Path:
    """Resolve ``--calibration``: an existing JSON file, a packaged calibration name, or a model.

    A model name (``global``) selects the calibration published for that model, so
    ``--weights hma --calibration global`` reads naturally. Anything else is a
    :class:`ConfigError` that lists what is available.
    """
    as_path = Path(name).expanduser()
    if as_path.is_file():
        return as_path
    text = str(name).strip()
    found = _calibration_by_name(text)
    if found is not None:
        return found
    if text and as_path.is_dir():
        # A folder is never a calibration, so a folder called like a calibration or a model in
        # the working directory must not shadow that name (the config reader may already have
        # made the name into an absolute path to the folder).
        found = _calibration_by_name(as_path.name)
        if found is None:
            raise ConfigError(
                f"calibration {text!r} is a folder, not a calibration file (CAL.json), and "
                f"{as_path.name!r} is no packaged calibration or model name; packaged "
                f"calibrations are {', '.join(calibration_names())}"
            )
        _folder_shadows(text, as_path.name, "--calibration", f"calibration {found.stem}")
        return found
    raise ConfigError(
        f"calibration {text!r} is neither an existing file nor a packaged calibration; "
        f"packaged calibrations are {', '.join(calibration_names())}"
    )


def _calibration_by_name(text: str) -> Path | None:
    """A packaged calibration called ``text``, or the one published for model ``text``, or None.

    A model without a published calibration is a :class:`ConfigError`: that name was meant.
    """
    stem = text.removesuffix(".json")
    packaged = _data_file("calibration", f"{stem}.json")
    if stem and "/" not in stem and "\\" not in stem and packaged.is_file():
        return packaged
    entry = load_registry().get(text)
    if entry is None:
        return None
    if entry.calibration is None:
        raise ConfigError(
            f"model {entry.name!r} has no published confidence calibration; pass a CAL.json "
            f"made with 'glaviz calibrate' or one of: {', '.join(calibration_names())}"
        )
    return _data_file("calibration", f"{entry.calibration}.json")


def _folder_shadows(text: str, name: str, option: str, used: str) -> None:
    """Say (one warning line) that ``option text`` named a folder and ``used`` was taken instead.

    Silent when ``text`` is the bare name ``name``: a folder of that name in the working directory
    cannot be what was meant, since neither weights nor calibrations are folders.
    """
    if text != name:
        logger.warning(
            "%s %s is a folder, not a file; using %s (the folder's name %r) instead",
            option,
            text,
            used,
            name,
        )


# --------------------------------------------------------------------------------------------------
# Weights resolution


@dataclass(frozen=True)
class ResolvedWeights:
    """Where ``--weights`` points, and the registry entry behind it (None for a plain file).

    ``source`` says how it was found: ``"file"`` (a path the user gave), ``"cache"`` (a fetched
    registry model) or ``"package"`` (a model shipped inside glaviz).
    """

    path: Path
    entry: ModelEntry | None
    source: Literal["file", "cache", "package"]

    @property
    def feature_groups(self) -> dict[str, int] | None:
        """The verified architecture if the cache recorded it, else the registry's, else None."""
        declared = self.entry.feature_groups if self.entry else None
        info = self._verified()
        if info is not None and isinstance(info.get("feature_groups"), dict):
            found = {str(k): int(v) for k, v in info["feature_groups"].items()}
            # A file without named inputs reads as input1, input2…: keep the registry's names then.
            # A file that names its groups is believed: equal band counts do not make co_pol_sar
            # into dem.
            named = all(group in GROUP_BANDS for group in found)
            if declared and not named and list(found.values()) == list(declared.values()):
                return declared
            return found
        return declared

    @property
    def location_size(self) -> int | None:
        info = self._verified()
        if info is not None and "location_size" in info:
            size = info["location_size"]
            return int(size) if size else None
        return self.entry.location_size if self.entry else None

    @property
    def calibration(self) -> Path | None:
        """The packaged calibration published for this model, if any."""
        if self.entry is None or self.entry.calibration is None:
            return None
        return calibration_path(self.entry.calibration)

    def _verified(self) -> dict[str, object] | None:
        if self.source != "cache":
            return None
        return read_info(self.path)


def packaged_path(entry: ModelEntry) -> Path | None:
    """The file a ``packaged`` entry ships inside glaviz, or None (not packaged / not installed)."""
    if not entry.packaged:
        return None
    parts = Path(entry.packaged).parts
    if Path(entry.packaged).is_absolute() or ".." in parts:
        raise ConfigError(f"registry entry {entry.name!r}: packaged path must stay in the package")
    path = Path(str(resources.files("glaviz").joinpath(*parts)))
    return path if path.exists() else None


def resolve_weights(spec: str | os.PathLike[str], *, home: Path | None = None) -> ResolvedWeights:
    """Turn ``--weights`` into a file: an existing path, a packaged model, or a cached download.

    A file wins over a registry name so that a user's own file is never shadowed. A folder never
    does: weights are files (``.h5`` checkpoints, ``.glaviz`` bundles), so ``--weights demo`` with
    a ``demo/`` folder in the working directory still means the registry model (also when the
    config reader has already made the name into the folder's absolute path; that case is said in
    a warning). A registry model that is not downloaded yet is a
    :class:`~glaviz.errors.WeightsError` naming the command to run; anything else unknown is a
    :class:`ConfigError` listing the known names.
    """
    from glaviz.errors import WeightsError

    text = os.fspath(spec)
    as_path = Path(text).expanduser()
    folder = bool(text) and as_path.is_dir()
    if text and as_path.exists() and not folder:
        return ResolvedWeights(path=as_path, entry=None, source="file")
    registry = load_registry()
    entry = registry.get(text)
    if entry is None and folder:
        entry = registry.get(as_path.name)
        if entry is None:
            raise ConfigError(
                f"--weights {text!r} is a folder, not a weights file (a .h5 checkpoint or a "
                f".glaviz bundle), and {as_path.name!r} is no registry model name; known models "
                f"are {', '.join(registry.names())} (see: glaviz fetch-weights --list)"
            )
        _folder_shadows(text, as_path.name, "--weights", f"registry model {entry.name!r}")
    if entry is None:
        looks_like_path = any(c in text for c in "/\\") or text.endswith((".h5", ".keras"))
        what = "no such file, and not" if looks_like_path else "neither an existing file nor"
        raise ConfigError(
            f"--weights {text!r}: {what} a registry model name; known models are "
            f"{', '.join(registry.names())} (see: glaviz fetch-weights --list)"
        )
    packaged = packaged_path(entry)
    if packaged is not None:
        return ResolvedWeights(path=packaged, entry=entry, source="package")
    target = cached_path(entry, home=home)
    if not target.is_file():
        raise WeightsError(
            f"model {entry.name!r} is not in the cache; run: glaviz fetch-weights {entry.name} "
            f"(cache: {target.parent})"
        )
    return ResolvedWeights(path=target, entry=entry, source="cache")
