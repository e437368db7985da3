"""glaviz model bundles: weights plus everything needed to use them, in one file, without pickle.

A bundle (``*.glaviz``) is a zip archive holding

- ``glaviz.json`` — :class:`BundleMetadata`: architecture, feature groups, patch size, location
  encoding and region names, normalisation statistics, optional confidence calibration, provenance;
- ``model.weights.h5`` — every variable of the training model (both heads), one HDF5 dataset per
  variable path.

Loading rebuilds the architecture from the JSON and loads the HDF5 weights; no code is
deserialised, so a bundle from an untrusted source cannot run anything. Weights are matched by
path and shape strictly (Keras' own ``load_weights`` only warns about mismatches, which would leave
a model half-initialised without a word).
"""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glaviz import __version__
from glaviz.errors import WeightsError
from glaviz.model.glavitu import GlaViTUConfig, build_glavitu
from glaviz.runs.atomic import atomic_path
from glaviz.runs.outputs import refuse_existing

BUNDLE_SUFFIX = ".glaviz"
FORMAT = "glaviz-model-bundle"
FORMAT_VERSION = 1
_META = "glaviz.json"
_WEIGHTS = "model.weights.h5"


class BundleMetadata(BaseModel):
    """Metadata stored next to the weights in a bundle."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    glaviz_version: str = __version__
    created: str = Field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )
    architecture: GlaViTUConfig
    #: ``{group: {"min": [...], "max": [...]}}`` in the model's group order, physical units.
    normalization: dict[str, dict[str, list[float]]] | None = None
    #: A calibration model in the JSON form ``deploy --calibration`` reads.
    calibration: dict[str, Any] | None = None
    #: Region names of a region-encoding model, in encoding order (the last slot is "unknown").
    region_names: list[str] | None = None
    #: Where the weights came from: a published file name, a training config, …
    source: str | None = None
    #: Free-form facts about training (epochs, best validation IoU, dataset, …).
    training: dict[str, Any] | None = None

    @property
    def feature_groups(self) -> dict[str, int]:
        return self.architecture.feature_groups

    @property
    def patch_size(self) -> int:
        return self.architecture.patch_size


@dataclass
class Bundle:
    """A loaded bundle: both models (sharing weights) and the metadata."""

    train_model: Any
    inference_model: Any
    metadata: BundleMetadata


def is_bundle(path: str | Path) -> bool:
    """True when ``path`` is a zip archive with glaviz bundle metadata."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return _META in archive.namelist()


def save_bundle(
    path: str | Path, train_model: Any, metadata: BundleMetadata, *, overwrite: bool = False
) -> Path:
    """Write a bundle atomically: a temporary file in the target folder, renamed at the end."""
    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / _WEIGHTS
        write_weights(train_model, weights)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_META, metadata.model_dump_json(indent=2))
            archive.write(weights, _WEIGHTS)
    return path


def read_metadata(path: str | Path) -> BundleMetadata:
    """Read and validate only the metadata of a bundle (fast: no TensorFlow)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            raw = json.loads(archive.read(_META))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path} is not a readable glaviz bundle ({exc})") from None
    if raw.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a glaviz model bundle (format {raw.get('format')!r})")
    if raw.get("format_version", 0) > FORMAT_VERSION:
        raise WeightsError(
            f"{path} uses bundle format {raw['format_version']}, newer than this glaviz "
            f"understands ({FORMAT_VERSION}); upgrade glaviz"
        )
    try:
        return BundleMetadata(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WeightsError(f"{path}: invalid bundle metadata at {where}: {first['msg']}") from None


def load_bundle(path: str | Path, *, mc_dropout: bool = False) -> Bundle:
    """Rebuild the model described by a bundle and load its weights."""
    path = Path(path)
    metadata = read_metadata(path)
    config = metadata.architecture
    if mc_dropout:
        config = config.model_copy(update={"mc_dropout": True})
    train, infer = build_glavitu(config)
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / _WEIGHTS
        try:
            with zipfile.ZipFile(path) as archive:
                weights.write_bytes(archive.read(_WEIGHTS))
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise WeightsError(f"{path}: cannot read the bundle's weights ({exc})") from None
        read_weights(train, weights, what=f"{path} ({config.describe()})")
    return Bundle(train, infer, metadata)


def write_weights(model: Any, path: Path) -> None:
    """Store every variable of ``model`` under its unique Keras path."""
    import h5py

    with h5py.File(path, "w") as f:
        for variable in model.weights:
            if variable.path in f:
                raise WeightsError(f"internal: variable path {variable.path} is not unique")
            f.create_dataset(variable.path, data=np.asarray(variable))


def read_weights(model: Any, path: Path, *, what: str) -> None:
    """Assign every variable of ``model`` from ``path``; any missing, extra or misshapen tensor
    raises :class:`WeightsError` before anything is assigned."""
    import h5py

    stored: dict[str, Any] = {}

    def collect(name: str, obj: Any) -> None:
        # visititems stops at the first non-None return, so this must return None.
        if isinstance(obj, h5py.Dataset):
            stored[name] = obj[()]

    try:
        with h5py.File(path, "r") as f:
            f.visititems(collect)
    except OSError as exc:
        raise WeightsError(f"{what}: weights file is damaged ({exc})") from None
    wanted = {v.path: v for v in model.weights}
    for name, variable in wanted.items():
        if name not in stored:
            raise WeightsError(f"{what}: the weights do not load: {name} is missing")
        if tuple(stored[name].shape) != tuple(variable.shape):
            raise WeightsError(
                f"{what}: the weights do not load: {name} has shape "
                f"{tuple(stored[name].shape)}, the model expects {tuple(variable.shape)}"
            )
    extra = sorted(set(stored) - set(wanted))
    if extra:
        raise WeightsError(f"{what}: the weights do not load: unexpected tensor {extra[0]}")
    for name, variable in wanted.items():
        variable.assign(stored[name])
