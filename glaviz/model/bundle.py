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

An untrusted bundle cannot exhaust the machine either. Before anything is extracted, the archive's
directory, member names, member count and declared sizes are checked against the limits below
(a zip bomb is refused from its directory alone); before any model is built, the declared
architecture is checked against the bounds of :class:`~glaviz.model.glavitu.GlaViTUConfig`; and
before any weight is read, every stored tensor's name and shape must match the model. Only then
are the weights extracted, to a temporary folder that is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
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
from glaviz.util.units import format_bytes

#: Sizes a file declares, in powers of 1000 like the file's own size in bytes (``6.0 GB``).
_size = functools.partial(format_bytes, binary=False)

BUNDLE_SUFFIX = ".glaviz"
FORMAT = "glaviz-model-bundle"
FORMAT_VERSION = 1
_META = "glaviz.json"
_WEIGHTS = "model.weights.h5"

# Limits of a bundle, checked before anything in it is extracted. The largest real bundle holds
# the published-size model: 10.0 M parameters, about 40 MB of weights, and a few kB of metadata.
#: Weights: the largest architecture GlaViTUConfig admits has 85 M float32 parameters (340 MB);
#: 500 MB leaves room for HDF5's own structures and is 12.5 times the published model.
MAX_WEIGHTS_BYTES = 500_000_000
#: Metadata: real ones (architecture, normalisation, a calibration curve, training facts) are
#: under 20 kB; 4 MB is 200 times that and keeps parsing the JSON cheap.
MAX_METADATA_BYTES = 4_000_000
#: Members: a bundle has 2, a few more would leave room for later formats.
MAX_MEMBERS = 8
#: The zip's central directory: a few hundred bytes for 2 members. Zip allows 64 KiB each for a
#: member's name, extra field and comment, which no bundle uses; bounding the directory bounds
#: what listing the archive costs, whatever its entry count claims.
MAX_DIRECTORY_BYTES = 100_000
#: Inflation ratio of a member larger than :data:`RATIO_FLOOR`: HDF5 float weights deflate about
#: 1.2:1 and JSON about 5:1, while zeros, what zip bombs are made of, deflate about 1000:1.
MAX_RATIO = 100
RATIO_FLOOR = 1 << 20
#: Member names a bundle may have: plain file names, never a path (``../x``, ``/etc/x``).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


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


def _unreadable(path: Path, exc: BaseException | str) -> WeightsError:
    return WeightsError(f"{path} is not a readable glaviz bundle ({exc})")


#: The end of central directory record (22 bytes, then a comment of up to 64 KiB) and the zip64
#: records it may point to, as the zip specification lays them out.
_END = b"PK\x05\x06"
_END_SIZE = 22
_END64_LOCATOR = b"PK\x06\x07"
_END64_LOCATOR_SIZE = 20
_END64 = b"PK\x06\x06"
_END64_SIZE = 56


def _directory(path: Path) -> tuple[int, int]:
    """The member count and central directory size that ``path``'s end record declares.

    Read here, from at most the last 64 kB of the file, so that an archive claiming millions of
    members is refused before :mod:`zipfile` lists them all.
    """
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        tail_size = min(size, _END_SIZE + 0xFFFF)
        file.seek(size - tail_size)
        tail = file.read(tail_size)
        at = tail.rfind(_END)
        if at < 0 or len(tail) - at < _END_SIZE:
            raise zipfile.BadZipFile("File is not a zip file")
        entries, directory = struct.unpack_from("<HL", tail, at + 10)
        # A zip64 archive: the locator right before the end record, and the zip64 end record
        # right before the locator, where zipfile reads it too.
        locator = size - tail_size + at - _END64_LOCATOR_SIZE
        if locator >= _END64_SIZE:
            file.seek(locator - _END64_SIZE)
            records = file.read(_END64_SIZE + _END64_LOCATOR_SIZE)
            if records[:4] == _END64 and records[_END64_SIZE:][:4] == _END64_LOCATOR:
                entries, directory = struct.unpack_from("<QQ", records, 32)
    return entries, directory


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    """One member's name, size, inflation ratio, encryption and compression, from the directory."""
    name = info.filename
    if not _PLAIN_NAME.fullmatch(name):
        raise WeightsError(
            f"{path}: member {name[:200]!r} is not a plain file name; a glaviz bundle holds "
            f"only {_META} and {_WEIGHTS}"
        )
    limit = MAX_WEIGHTS_BYTES if name == _WEIGHTS else MAX_METADATA_BYTES
    if info.file_size > limit:
        raise WeightsError(
            f"{path}: member {name} would inflate to {_size(info.file_size)}, more than "
            f"{_size(limit)}, the most a bundle's {name} can need; refusing to extract it"
        )
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * info.compress_size:
        raise WeightsError(
            f"{path}: member {name} would inflate {info.file_size // max(info.compress_size, 1)} "
            f"times (to {_size(info.file_size)}), as zip bombs do; real bundles compress less "
            f"than {MAX_RATIO}:1"
        )
    if info.flag_bits & 0x1:
        raise WeightsError(f"{path}: member {name} is encrypted; bundles never are")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise WeightsError(
            f"{path}: member {name} uses zip compression method {info.compress_type}; bundles "
            "are stored or deflated"
        )


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[zipfile.ZipFile]:
    """``path`` as an open zip archive whose directory and members are within the limits.

    Nothing is extracted here: every check reads only the archive's directory.
    """
    try:
        entries, directory = _directory(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise _unreadable(path, exc) from None
    if entries > MAX_MEMBERS:
        raise WeightsError(
            f"{path}: the archive lists {entries} members; a glaviz bundle has 2 ({_META}, "
            f"{_WEIGHTS}), never more than {MAX_MEMBERS}"
        )
    if directory > MAX_DIRECTORY_BYTES:
        raise WeightsError(
            f"{path}: the archive's directory takes {_size(directory)}; a glaviz bundle's takes "
            f"a few hundred bytes, never more than {_size(MAX_DIRECTORY_BYTES)}"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise _unreadable(path, exc) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise WeightsError(f"{path}: the archive has {len(infos)} members; a bundle has 2")
        seen: set[str] = set()
        for info in infos:
            if info.filename in seen:
                raise WeightsError(
                    f"{path}: member {info.filename} appears twice; which one counts would "
                    "depend on the reader"
                )
            seen.add(info.filename)
            _check_member(path, info)
        yield archive


def _read_member(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    """A small member's bytes (its size was checked with the directory)."""
    try:
        return archive.read(name)
    except KeyError:
        raise _unreadable(path, f"there is no {name} in the archive") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _unreadable(path, exc) from None


def _metadata(path: Path, archive: zipfile.ZipFile) -> BundleMetadata:
    """The validated metadata of an archive checked by :func:`_open_archive`."""
    try:
        raw = json.loads(_read_member(path, archive, _META))
    except (ValueError, RecursionError) as exc:  # JSON, UTF-8, nesting, huge numbers
        raise _unreadable(path, f"{_META}: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise WeightsError(f"{path}: {_META} holds a JSON {type(raw).__name__}, not a JSON object")
    if raw.get("format") != FORMAT:
        raise WeightsError(
            f"{path} is not a glaviz model bundle (format {str(raw.get('format'))[:80]!r})"
        )
    version = raw.get("format_version", 0)
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise WeightsError(
            f"{path} uses bundle format {version}, newer than this glaviz understands "
            f"({FORMAT_VERSION}); upgrade glaviz"
        )
    extra = sorted(set(archive.namelist()) - {_META, _WEIGHTS})
    if extra:
        raise WeightsError(
            f"{path}: member {extra[0]} is not part of a format {FORMAT_VERSION} bundle "
            f"({_META}, {_WEIGHTS})"
        )
    try:
        return BundleMetadata(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WeightsError(f"{path}: invalid bundle metadata at {where}: {first['msg']}") from None


def is_bundle(path: str | Path) -> bool:
    """True when ``path`` is a zip archive named ``*.glaviz`` or holding glaviz bundle metadata.

    A ``*.glaviz`` archive counts without being listed, so that :func:`read_metadata` can say
    what is wrong with one that lists too much.
    """
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    if path.suffix == BUNDLE_SUFFIX:
        return True
    try:
        with _open_archive(path) as archive:
            return _META in archive.namelist()
    except WeightsError:
        return False


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
    """Read and validate only the metadata of a bundle (fast: no TensorFlow).

    The archive's directory is checked against the limits first (:func:`_open_archive`), and the
    architecture against :class:`GlaViTUConfig`'s bounds.
    """
    path = Path(path)
    with _open_archive(path) as archive:
        return _metadata(path, archive)


def load_bundle(path: str | Path, *, mc_dropout: bool = False) -> Bundle:
    """Rebuild the model described by a bundle and load its weights.

    Every check that needs no model comes first, so a hostile bundle is refused before
    TensorFlow is even imported; the weights are extracted only after them, to a temporary
    folder that is removed on success and failure alike.
    """
    path = Path(path)
    with _open_archive(path) as archive:
        metadata = _metadata(path, archive)
        if _WEIGHTS not in archive.namelist():
            raise _unreadable(path, f"there is no {_WEIGHTS} in the archive")
        config = metadata.architecture
        if mc_dropout:
            config = config.model_copy(update={"mc_dropout": True})
        train, infer = build_glavitu(config)
        with tempfile.TemporaryDirectory(prefix="glaviz-bundle-") as scratch:
            weights = Path(scratch) / _WEIGHTS
            try:
                with archive.open(_WEIGHTS) as src, weights.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
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
    raises :class:`WeightsError` before anything is assigned.

    Names, shapes and dtypes are compared with the model's from the HDF5 headers before any data
    is read: a dataset may declare any shape (an unwritten one costs no space in the file), and
    reading it would allocate all of it. Datasets whose data lies outside the file (external or
    virtual storage) are refused too.
    """
    import h5py

    wanted = {v.path: v for v in model.weights}
    try:
        with h5py.File(path, "r") as f:
            datasets: dict[str, Any] = {}

            def collect(name: str, obj: Any) -> None:
                # visititems stops at the first non-None return, so this must return None.
                if isinstance(obj, h5py.Dataset):
                    datasets[name] = obj

            f.visititems(collect)
            _check_datasets(datasets, wanted, what)
            stored = {name: datasets[name][()] for name in wanted}
    except OSError as exc:
        raise WeightsError(f"{what}: weights file is damaged ({exc})") from None
    for name, variable in wanted.items():
        variable.assign(stored[name])


def _check_datasets(datasets: dict[str, Any], wanted: dict[str, Any], what: str) -> None:
    """Refuse missing, misshapen, non-numeric, external and unexpected datasets, unread."""
    for name, variable in wanted.items():
        if name not in datasets:
            raise WeightsError(f"{what}: the weights do not load: {name} is missing")
        dataset = datasets[name]
        if tuple(dataset.shape or ()) != tuple(variable.shape):
            raise WeightsError(
                f"{what}: the weights do not load: {name} has shape "
                f"{tuple(dataset.shape or ())}, the model expects {tuple(variable.shape)}"
            )
        if dataset.dtype.kind not in "fiu":
            raise WeightsError(f"{what}: the weights do not load: {name} holds {dataset.dtype}")
        if dataset.external or dataset.is_virtual:
            raise WeightsError(
                f"{what}: the weights do not load: {name} refers to data outside the bundle"
            )
    extra = sorted(set(datasets) - set(wanted))
    if extra:
        raise WeightsError(f"{what}: the weights do not load: unexpected tensor {extra[0][:200]}")
