"""The authors' published feature files, read safely and turned into a glaviz stack.

The independent-acquisition test areas of Maslov et al. (2025) are published as the output of
the authors' ``compile_features.py`` (konstantin-a-maslov/scalable_glacier_mapping): a pickle of
``(features, attrs)``, where

* ``features`` maps ``optical``, ``dem`` (elevation, slope), ``lat``, ``lon`` and optionally
  ``co_pol_sar``, ``cross_pol_sar``, ``in_sar``, ``thermal`` to float64 ``(H, W, C)`` arrays that
  are already normalised (``(x - min) / (max - min)`` with the benchmark statistics; NaN optical
  set to 0 first; SAR ``log10(sigma0 + 1e-6)`` first) and zero-padded to multiples of 384;
* ``attrs`` holds ``height``/``width`` (the scene), ``pad_height``/``pad_width`` (rows/columns
  added above/left; the rest of the padding is below/right) and ``meta``, the optical raster's
  rasterio profile with ``crs`` (``rasterio.crs.CRS``) and ``transform`` (``affine.Affine``).

A pickle can run any code it names, so these files are never given to ``pickle.load``.
:class:`PublishedUnpickler` resolves only the globals such a file needs (numpy array and scalar
reconstruction, plain containers, rasterio's CRS, affine's Affine) and refuses every other one with
an :class:`InputError` the moment it is met, before it can be called. Nothing before it can have
run code either, since everything before it passed the same allow-list.

:func:`convert_published` crops the padding, inverts the published normalisation (so the stack is
in physical units like every glaviz stack, and deploy normalises it again with whichever model's
statistics it runs) and writes the stack with the conventions of :mod:`glaviz.features.stack`.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import pickle
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio

from glaviz.errors import InputError
from glaviz.features.stack import (
    GDAL_CACHE_MB,
    INPUTS,
    StackResult,
    create_stack,
    resolve_output,
    tag_stack,
)
from glaviz.published.groups import GROUP_BANDS, GROUP_STACK_BANDS
from glaviz.published.normalisation import SAR_EPSILON, SAR_GROUPS, NormalisationStats
from glaviz.runs.atomic import atomic_path
from glaviz.util.progress import Progress
from glaviz.util.rasters import crs_name

log = logging.getLogger("glaviz.features")

#: Keys of ``features`` that are not model inputs: glaviz derives coordinates from the CRS.
COORDINATE_KEYS = ("lat", "lon")
#: Groups every published file has (``compile_features.py`` requires optical, elevation, slope).
REQUIRED_GROUPS = ("optical", "dem")


def _numpy_attr(modules: tuple[str, ...], name: str) -> Callable[[], Any]:
    """Resolve ``name`` from the first importable module: numpy 2 renamed ``numpy.core``."""

    def resolve() -> Any:
        import importlib

        for module in modules:
            try:
                return getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                continue
        raise AttributeError(f"numpy has no {name} in {', '.join(modules)}")

    return resolve


_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")


class AffineState:
    """Stands in for ``affine.Affine`` while unpickling; :meth:`to_affine` makes the real one.

    affine 2.x (the authors' environment pinned 2.4.0) was a namedtuple: its pickles pass the
    values as constructor arguments. affine 3.x is an attrs class: its pickles pass them in a
    state dict. Neither form builds a valid object in the other version, so both are read here.
    """

    args: tuple[Any, ...]
    state: dict[str, Any]

    def __new__(cls, *args: Any) -> AffineState:
        obj = super().__new__(cls)
        obj.args, obj.state = tuple(args), {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.state = dict(state)

    def to_affine(self) -> Any:
        from affine import Affine

        if all(k in self.state for k in "abcdef"):
            values = [self.state[k] for k in "abcdef"]
        else:
            values = list(self.args[:6])
        if len(values) != 6 or not all(isinstance(v, int | float) for v in values):
            raise ValueError(f"not an affine transform: {self.args!r} {self.state!r}")
        return Affine(*(float(v) for v in values))


def _rasterio_crs() -> Any:
    from rasterio.crs import CRS

    return CRS


@dataclass(frozen=True)
class FileBytes:
    """A large bytes payload left in the file: ``length`` bytes at ``offset`` of ``path``."""

    path: Path
    offset: int
    length: int

    def read(self) -> bytes:
        with self.path.open("rb") as file:
            file.seek(self.offset)
            return file.read(self.length)


def _file_array(raw: FileBytes, dtype: np.dtype, shape: tuple[int, ...], order: str) -> Any:
    """A read-only memory map of an array whose bytes stayed in the file."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or math.prod(shape) * dtype.itemsize != raw.length:
        raise pickle.UnpicklingError(
            f"array of {shape} {dtype} does not match its {raw.length} stored bytes"
        )
    return np.memmap(raw.path, dtype=dtype, mode="r", offset=raw.offset, shape=shape, order=order)


class LazyArray:
    """What ``numpy.core.multiarray._reconstruct`` makes here; :meth:`value` is the array.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by a state
    ``(version, shape, dtype, is_fortran, raw bytes)``. When the raw bytes were left in the file
    (:class:`FileBytes`), the array becomes a memory map of them instead of a copy in RAM.
    """

    def __init__(self, subtype: Any, shape: Any, dtype: Any) -> None:
        if subtype is not np.ndarray:
            raise pickle.UnpicklingError(f"only plain numpy arrays are read, not {subtype!r}")
        self._value: Any = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("unexpected numpy array state")
        _, shape, dtype, fortran, raw = state
        if isinstance(raw, FileBytes):
            self._value = _file_array(raw, dtype, tuple(shape), "F" if fortran else "C")
        else:
            array = _numpy_attr(_MULTIARRAY, "_reconstruct")()(np.ndarray, (0,), b"b")
            array.__setstate__(state)
            self._value = array

    def value(self) -> Any:
        if self._value is None:
            raise pickle.UnpicklingError("a numpy array without its data")
        return self._value


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> Any:
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays), memory-mapping file payloads."""
    if isinstance(buffer, FileBytes):
        return _file_array(buffer, dtype, tuple(shape), order)
    return _numpy_attr(_NUMERIC, "_frombuffer")()(buffer, dtype, shape, order)


#: Every global a ``compile_features.py`` output may name, and how to resolve it.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    **{(m, "_reconstruct"): (lambda: LazyArray) for m in _MULTIARRAY},
    **{(m, "scalar"): _numpy_attr(_MULTIARRAY, "scalar") for m in _MULTIARRAY},
    **{(m, "_frombuffer"): (lambda: _frombuffer) for m in _NUMERIC},
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    # Protocol 2 writes bytes as _codecs.encode(text, "latin1"): a pure conversion.
    ("_codecs", "encode"): lambda: __import__("codecs").encode,
    **{
        (b, n): (lambda n=n: getattr(__import__("builtins"), n))
        for b in ("builtins", "__builtin__")
        for n in ("set", "frozenset", "bytearray", "list", "dict", "tuple")
    },
    ("collections", "OrderedDict"): lambda: OrderedDict,
    ("rasterio.crs", "CRS"): _rasterio_crs,
    ("affine", "Affine"): lambda: AffineState,
}


#: Payloads from this size on stay in the file (memory-mapped) instead of being read.
LAZY_BYTES = 1 << 20


class PublishedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; anything else is an error.

    ``find_class`` is called when the pickle names a global, before the global can be called, so
    a refused global never runs. Persistent ids are refused by the base class already.

    It is Python's own pure-Python unpickler with one change: a large bytes payload outside a
    protocol-4 frame (numpy writes every big array's data that way) is not read but recorded as
    :class:`FileBytes`, which :class:`LazyArray` memory-maps. A 14 GB published file then costs
    the memory of the strips being converted, not its size. The opcode loop runs in Python, but
    such a file holds only a few hundred opcodes.
    """

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, *, path: Path) -> None:
        super().__init__(file)
        self.path = path
        self._raw = file
        try:  # only a real file can be memory-mapped; anything else is read as usual
            self._size: int | None = os.fstat(file.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            self._size = None

    def _payload(self, length: int) -> bytes | FileBytes:
        frame = self._unframer.current_frame
        if frame is not None and frame.tell() < len(frame.getbuffer()):
            return self.read(length)  # inside a frame: already in memory
        self._unframer.current_frame = None
        if self._size is None or length < LAZY_BYTES:
            return self.read(length)
        offset = self._raw.tell()
        if offset + length > self._size:
            raise EOFError(f"{length} bytes at offset {offset} run past the end of the file")
        self._raw.seek(length, os.SEEK_CUR)
        return FileBytes(self.path, offset, length)

    def _load_binbytes(self) -> None:
        (length,) = struct.unpack("<I", self.read(4))
        self.append(self._payload(length))

    def _load_binbytes8(self) -> None:
        (length,) = struct.unpack("<Q", self.read(8))
        if length > sys.maxsize:
            raise pickle.UnpicklingError("BINBYTES8 exceeds the maximum size")
        self.append(self._payload(length))

    def _load_build(self) -> None:
        # BUILD sets an object's state (or, failing __setstate__, its attributes): allow it only
        # on the instances such a file builds, never on a class or function it could rewire.
        from rasterio.crs import CRS

        target = self.stack[-2] if len(self.stack) > 1 else None
        if not isinstance(
            target, np.dtype | np.ndarray | np.generic | CRS | AffineState | LazyArray
        ):
            raise pickle.UnpicklingError(
                f"refusing to set the state of a {type(target).__name__} object"
            )
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BINBYTES[0]] = _load_binbytes
    dispatch[pickle.BINBYTES8[0]] = _load_binbytes8
    dispatch[pickle.BUILD[0]] = _load_build

    def load(self) -> Any:
        return _resolve_lazy(super().load())

    def find_class(self, module: str, name: str) -> Any:
        resolver = ALLOWED_GLOBALS.get((module, name))
        if resolver is None:
            raise InputError(
                f"{self.path} names the Python global {module}.{name}, which a published "
                "compile_features.py file never contains; refusing to unpickle it (glaviz "
                "loads only numpy arrays, plain containers, rasterio CRS and affine transforms "
                "from these files). Do not open this file with pickle anywhere else either"
            )
        return resolver()


def _resolve_lazy(obj: Any) -> Any:
    """Replace the :class:`LazyArray` and :class:`FileBytes` stand-ins by arrays and bytes."""
    if isinstance(obj, LazyArray):
        return obj.value()
    if isinstance(obj, FileBytes):
        return obj.read()
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _resolve_lazy(value)
        return obj
    if isinstance(obj, list):
        obj[:] = [_resolve_lazy(v) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(_resolve_lazy(v) for v in obj)
    return obj


@dataclass(frozen=True)
class PublishedFeatures:
    """The contents of one published feature file, checked.

    ``arrays`` holds the model groups, still padded and normalised, as the file had them.
    """

    path: Path
    arrays: dict[str, np.ndarray]
    height: int
    width: int
    pad_height: int
    pad_width: int
    crs: Any
    transform: Any
    coordinates: dict[str, np.ndarray]

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def rows(self, group: str, start: int, stop: int) -> np.ndarray:
        """A copy of scene rows ``start:stop`` of ``group`` without padding, ``(rows, width, C)``.

        A memory-mapped array's pages are handed back to the kernel after the copy, so reading
        a whole file strip by strip does not grow this process's memory to the file's size.
        """
        ph, pw = self.pad_height, self.pad_width
        array = self.arrays[group]
        strip = np.array(array[ph + start : ph + stop, pw : pw + self.width])
        mapping = getattr(array, "_mmap", None)  # numpy.memmap's mmap.mmap
        if mapping is not None and hasattr(mapping, "madvise"):
            mapping.madvise(mmap.MADV_DONTNEED)
        return strip


def load_published(path: str | os.PathLike[str]) -> PublishedFeatures:
    """Read and check a ``compile_features.py`` output through :class:`PublishedUnpickler`.

    The feature arrays come back as read-only memory maps of the file where numpy wrote their
    bytes unframed (every large array), so memory use stays far below the file's size.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"published features file {path} does not exist; download it with "
            "glaviz fetch-dataset independent --area AREA"
        )
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(1)
        if head != b"\x80":
            raise InputError(
                f"{path} is not a pickle (it starts with {head!r}); --from-published expects an "
                "AREA_features.pickle written by compile_features.py"
            )
        file.seek(0)
        try:
            loaded = PublishedUnpickler(file, path=path).load()
        except InputError:
            raise
        except MemoryError:
            raise InputError(
                f"not enough memory to read {path} ({size / 1e9:.1f} GB); it holds more small "
                "arrays than expected of a compile_features.py output"
            ) from None
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
            RecursionError,
        ) as exc:
            raise InputError(
                f"cannot read {path} as a compile_features.py output ({type(exc).__name__}: "
                f"{exc}); the file may be truncated: check its size and md5 against the archive"
            ) from None
    return _checked(path, loaded)


def _checked(path: Path, loaded: Any) -> PublishedFeatures:
    def bad(what: str) -> InputError:
        return InputError(
            f"{path} is not a compile_features.py output: {what}; expected a pickle of "
            "(features, attrs) with features optical, dem, lat, lon, … and attrs height, width, "
            "pad_height, pad_width, meta"
        )

    if not (isinstance(loaded, tuple) and len(loaded) == 2):
        raise bad(f"it holds a {type(loaded).__name__}, not a (features, attrs) pair")
    features, attrs = loaded
    if not isinstance(features, dict) or not isinstance(attrs, dict):
        raise bad("features and attrs must be dicts")
    missing = [k for k in ("height", "width", "pad_height", "pad_width", "meta") if k not in attrs]
    if missing:
        raise bad(f"attrs lack {', '.join(missing)}")
    try:
        h, w, ph, pw = (int(attrs[k]) for k in ("height", "width", "pad_height", "pad_width"))
    except (TypeError, ValueError):
        raise bad("height, width, pad_height and pad_width must be integers") from None
    meta = attrs["meta"]
    if not isinstance(meta, dict):
        raise bad("attrs['meta'] is not a dict")
    from rasterio.crs import CRS

    crs, transform = meta.get("crs"), meta.get("transform")
    if not isinstance(crs, CRS):
        raise bad(f"meta['crs'] is {crs!r}, not a rasterio CRS (the scene needs one)")
    if not isinstance(transform, AffineState):
        raise bad(f"meta['transform'] is {transform!r}, not an affine transform")
    try:
        transform = transform.to_affine()
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not transform.is_rectilinear:
        raise bad("the transform is rotated; glaviz stacks are north-up")
    missing = [g for g in REQUIRED_GROUPS if g not in features]
    if missing:
        raise bad(f"features lack {', '.join(missing)} (it has {', '.join(map(str, features))})")

    arrays: dict[str, np.ndarray] = {}
    coordinates: dict[str, np.ndarray] = {}
    padded: tuple[int, ...] | None = None
    for key, value in features.items():
        if key not in GROUP_BANDS and key not in COORDINATE_KEYS:
            log.warning("%s: skipping feature %r, which is no GlaViTU input", path, key)
            continue
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            raise bad(f"feature {key!r} is not a numeric numpy array")
        array = value[..., None] if value.ndim == 2 else value
        expected = GROUP_BANDS.get(key, 1)
        if array.ndim != 3 or array.shape[-1] != expected:
            raise bad(f"feature {key!r} has shape {value.shape}; expected (H, W, {expected})")
        if padded is None:
            padded = array.shape[:2]
        elif array.shape[:2] != padded:
            raise bad(f"feature {key!r} is {array.shape[:2]}, other features are {padded}")
        (coordinates if key in COORDINATE_KEYS else arrays)[key] = array
    assert padded is not None
    if h < 1 or w < 1 or ph < 0 or pw < 0 or ph + h > padded[0] or pw + w > padded[1]:
        raise bad(f"a {h} × {w} scene padded by ({ph}, {pw}) does not fit arrays of {padded}")
    for key, label in (("height", h), ("width", w)):
        if key in meta and int(meta[key]) != label:
            raise bad(f"meta[{key!r}] = {meta[key]} but attrs[{key!r}] = {label}")
    ordered = {g: arrays[g] for g in GROUP_BANDS if g in arrays}
    return PublishedFeatures(
        path=path,
        arrays=ordered,
        height=h,
        width=w,
        pad_height=ph,
        pad_width=pw,
        crs=crs,
        transform=transform,
        coordinates=coordinates,
    )


def denormalise_group(
    group: str, x: np.ndarray, stats: NormalisationStats | None = None
) -> np.ndarray:
    """Invert the published normalisation of one group: model inputs back to physical units.

    ``x * (max - min) + min``, then ``10**v - 1e-6`` for SAR backscatter (the published
    ``log10(sigma0 + 1e-6)``). Computed in float64, returned as float32.
    """
    stats = NormalisationStats.published() if stats is None else stats
    lo, hi = stats.bounds(group)
    values = np.asarray(x, dtype=np.float64) * (hi - lo) + lo
    if group in SAR_GROUPS:
        values = np.power(10.0, values) - SAR_EPSILON
    return values.astype(np.float32)


def missing_optical(x: np.ndarray, stats: NormalisationStats | None = None) -> np.ndarray:
    """Where the published optical bands hold the normalised 0 in every band (NaN at the source).

    ``compile_features.py`` replaced NaN optical pixels by 0 before normalising, so they arrive
    as ``(0 - min) / (max - min)`` in all six bands; real TOA reflectance is never 0 in every band.
    """
    stats = NormalisationStats.published() if stats is None else stats
    lo, hi = stats.bounds("optical")
    zero = (0.0 - lo) / (hi - lo)
    return np.all(np.abs(np.asarray(x, dtype=np.float64) - zero) <= 1e-9, axis=-1)


#: Rows converted and written at a time: one strip of stack tiles.
STRIP_ROWS = 256


def convert_published(
    *,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    overwrite: bool = False,
    progress: bool = False,
    stats: NormalisationStats | None = None,
) -> StackResult:
    """Write the glaviz stack of the published feature file ``source`` to ``output``.

    The stack covers the unpadded scene on the file's CRS and transform, in physical units
    (the published normalisation inverted with ``stats``, default the published statistics the
    file was made with), NaN where the optical input was NaN. Returns a
    :class:`~glaviz.features.stack.StackResult`.
    """
    started = time.perf_counter()
    source = Path(source)
    output = resolve_output(Path(output), {"from_published": source}, overwrite)
    data = load_published(source)
    _check_coordinates(data)
    bands, units = _stack_bands(data.groups)
    strips = math.ceil(data.height / STRIP_ROWS)
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB),
        Progress(progress, total=strips, description="features") as bar,
        atomic_path(output, suffix=".tif.part") as tmp,
    ):
        _write_converted(tmp, data, bands, units, stats=stats, bar=bar)
    return StackResult(
        path=output,
        width=data.width,
        height=data.height,
        crs=crs_name(data.crs),
        bands=bands,
        groups=data.groups,
        slope_computed=False,
        seconds=time.perf_counter() - started,
        inputs={"from_published": str(source)},
    )


def _stack_bands(groups: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Band names and units of the stack of these groups, as :func:`compile_stack` names them.

    The published ``dem`` group is the stack's ``elevation`` and ``slope`` inputs together.
    """
    bands = tuple(b for g in groups for b in GROUP_STACK_BANDS[g])
    units_of = {g: INPUTS[g].units for g in groups if g in INPUTS}
    units_of["dem"] = INPUTS["elevation"].units + INPUTS["slope"].units
    return bands, tuple(u for g in groups for u in units_of[g])


def _physical_strip(
    data: PublishedFeatures,
    start: int,
    stop: int,
    *,
    count: int,
    stats: NormalisationStats | None,
) -> np.ndarray:
    """Scene rows ``start:stop`` of every group in physical units, ``(count, rows, width)``.

    Optical pixels that the published script had set to 0 because they were NaN become NaN
    again (:func:`missing_optical`).
    """
    chunk = np.empty((count, stop - start, data.width), np.float32)
    i = 0
    for group in data.groups:
        normalised = data.rows(group, start, stop)
        values = denormalise_group(group, normalised, stats)
        if group == "optical":
            values[missing_optical(normalised, stats)] = np.nan
        k = values.shape[-1]
        chunk[i : i + k] = np.moveaxis(values, -1, 0)
        i += k
    return chunk


def _write_converted(
    path: Path,
    data: PublishedFeatures,
    bands: tuple[str, ...],
    units: tuple[str, ...],
    *,
    stats: NormalisationStats | None,
    bar: Progress,
) -> None:
    """Write the stack of ``data`` strip by strip (:data:`STRIP_ROWS` rows), then tag it."""
    with create_stack(
        path,
        bands=bands,
        units=units,
        width=data.width,
        height=data.height,
        crs=data.crs,
        transform=data.transform,
    ) as dst:
        for start in range(0, data.height, STRIP_ROWS):
            stop = min(start + STRIP_ROWS, data.height)
            strip = _physical_strip(data, start, stop, count=len(bands), stats=stats)
            dst.write(strip, window=((start, stop), (0, data.width)))
            bar.advance()
        tag_stack(
            dst,
            inputs={"from_published": str(data.path.resolve())},
            bands=bands,
            units=units,
            note="physical units, converted from a published compile_features.py file "
            "by inverting the published normalisation; glaviz normalises with the model's "
            "statistics",
        )


def _check_coordinates(data: PublishedFeatures) -> None:
    """Warn when the file's lat/lon grids disagree with its CRS and transform.

    ``compile_features.py`` computed them from the same transform (pixel centres, EPSG:4326), so
    a disagreement means a damaged or hand-edited file; the stack follows the CRS and transform.
    """
    if not all(k in data.coordinates for k in COORDINATE_KEYS):
        return
    from rasterio.transform import xy
    from rasterio.warp import transform as reproject_points

    row, col = data.height // 2, data.width // 2
    x, y = xy(data.transform, row, col)
    lon, lat = reproject_points(data.crs, "EPSG:4326", [x], [y])
    ph, pw = data.pad_height, data.pad_width
    stored_lat = float(data.coordinates["lat"][ph + row, pw + col, 0])
    stored_lon = float(data.coordinates["lon"][ph + row, pw + col, 0])
    if abs(stored_lat - lat[0]) > 1e-5 or abs(stored_lon - lon[0]) > 1e-5:
        log.warning(
            "%s: the lat/lon grids (%.6f, %.6f at the scene centre) disagree with its CRS and "
            "transform (%.6f, %.6f); the stack follows the CRS and transform",
            data.path,
            stored_lat,
            stored_lon,
            lat[0],
            lon[0],
        )
