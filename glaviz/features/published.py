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

Such a file is also untrusted in size: a few hundred bytes can name a gigabyte allocation or share
one tuple so often that copying it never ends. So everything the unpickler makes is bounded by
what the file itself holds (:class:`Limits`): reads never run past the end of the file, every
allocation the allowed constructors and numpy arrays make is charged against a budget of twice the
file's size, and an object can be referenced a second time (pickle's memo, ``DUP``) only if it is
an immutable leaf. A ``compile_features.py`` output shares nothing else: it is a tree, and the
step after unpickling visits each of its objects once.

:func:`convert_published` crops the padding, inverts the published normalisation (so the stack is
in physical units like every glaviz stack, and deploy normalises it again with whichever model's
statistics it runs) and writes the stack with the conventions of :mod:`glaviz.features.stack`.
"""

from __future__ import annotations

import codecs
import functools
import logging
import math
import mmap
import os
import pickle
import reprlib
import struct
import sys
import time
import types
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
from glaviz.util.units import format_bytes

#: Sizes a file declares, in powers of 1000 like the file's own size in bytes (``6.0 GB``).
_size = functools.partial(format_bytes, binary=False)

log = logging.getLogger("glaviz.features")

#: Keys of ``features`` that are not model inputs: glaviz derives coordinates from the CRS.
COORDINATE_KEYS = ("lat", "lon")
#: Groups every published file has (``compile_features.py`` requires optical, elevation, slope).
REQUIRED_GROUPS = ("optical", "dem")
#: Features a file may hold: the eight groups and two coordinate grids of ``compile_features.py``,
#: with room to spare. More is no published file, and each would be another warning line.
MAX_FEATURES = 64

#: The budget of the work and allocations of unpickling, as a multiple of the file's size. A
#: published file's array bytes are charged at most twice (as the argument of a call, then as the
#: array), and everything else it holds about once; twice that leaves a wide margin.
ALLOCATION_FACTOR = 4
#: Opcodes a file may run: a ``compile_features.py`` output has a few hundred (its arrays' bytes
#: are single opcodes). Each opcode can make one small object of up to 200 bytes (an empty set),
#: so without this a 10 MB file of them would take 2 GB.
MAX_OPCODES = 100_000
#: Nesting a file may have: ``(features, attrs)`` → ``attrs`` → ``meta`` → a value is 4 deep.
MAX_DEPTH = 16
#: Dimensions of an array: the published ones have 3, numpy allows 64.
MAX_DIMS = 32


class HostileFile(pickle.UnpicklingError):
    """The file asks for more than its own contents can justify, or shares what a published file
    never shares; :func:`load_published` names the file."""


def _short(obj: Any) -> str:
    """A repr of bounded length for error messages: a hostile value may be megabytes long."""
    return reprlib.repr(obj)


class Limits:
    """What one file's size can justify: the work and allocations of unpickling it.

    Every allocation the allowed constructors and numpy arrays make, and every call's text and
    bytes arguments (which the callee copies or parses), are charged with :meth:`charge`
    *before* the work is done, against :data:`ALLOCATION_FACTOR` times the file's size. A valid
    file stays well inside; a file that names a large allocation, or repeats one payload or one
    piece of text many times through pickle's memo, runs out and is refused with
    :class:`HostileFile`.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.left = ALLOCATION_FACTOR * size

    def check(self, nbytes: int, what: str) -> None:
        """Refuse ``what`` if it would need more than is left, without charging it."""
        if nbytes > self.left:
            budget = ALLOCATION_FACTOR * self.size
            spent = f" after {_size(budget - self.left)} for the objects before it"
            before = "" if nbytes > budget else spent
            raise HostileFile(
                f"{what} needs {_size(nbytes)}{before}, more than the file of {self.size} bytes "
                "can hold"
            )

    def charge(self, nbytes: int, what: str) -> None:
        """Refuse ``what`` (see :meth:`check`), or count its ``nbytes`` as spent."""
        self.check(nbytes, what)
        self.left -= nbytes


def _shape(shape: Any) -> tuple[int, ...]:
    """A numpy shape from the file, as a tuple of non-negative ints, or :class:`HostileFile`."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, tuple | list) or len(dims) > MAX_DIMS:
        raise HostileFile(f"a numpy array shape of {_short(shape)}")
    if not all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in dims
    ):
        raise HostileFile(f"a numpy array shape of {_short(shape)}")
    return tuple(int(d) for d in dims)


def _numeric_dtype(dtype: Any) -> np.dtype:
    """The dtype of an array from the file; arrays of Python objects are refused.

    numpy unpickles an object array by filling its shape from a list without checking the list's
    length: a large shape with a short list reads past the list (a crash), and published features
    are numeric anyway.
    """
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise HostileFile("a numpy array of Python objects (dtype object); features are numeric")
    return dtype


def _array_bytes(shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, str]:
    """The bytes an array of ``shape`` and ``dtype`` takes, and its description.

    Items of size 0 count as one byte each, so that their number is bounded too.
    """
    what = f"a numpy array of shape {shape} {dtype}"
    return math.prod(shape) * max(dtype.itemsize, 1), what


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
            raise ValueError(f"not an affine transform: {_short(self.args)} {_short(self.state)}")
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


class NdarrayName:
    """Stands in for ``numpy.ndarray`` while unpickling.

    numpy's pickles name ``ndarray`` only as the first argument of ``_reconstruct``
    (:class:`LazyArray`). Called itself, it would allocate an array of whatever shape the file
    names, so calling (or ``NEWOBJ`` on) this stand-in is refused.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> NdarrayName:
        raise HostileFile(
            "it calls numpy.ndarray(...) itself, which numpy's pickles never do (it allocates "
            "an array of any shape the file names)"
        )


class LazyArray:
    """What ``numpy.core.multiarray._reconstruct`` makes here; :meth:`value` is the array.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by a state
    ``(version, shape, dtype, is_fortran, raw bytes)``. When the raw bytes were left in the file
    (:class:`FileBytes`), the array becomes a memory map of them instead of a copy in RAM. The
    shape and dtype are checked and charged to the file's :class:`Limits` before numpy sees them.
    """

    def __init__(self, subtype: Any, shape: Any, dtype: Any, *, limits: Limits) -> None:
        if subtype is not NdarrayName:
            raise pickle.UnpicklingError(f"only plain numpy arrays are read, not {subtype!r}")
        # numpy's own _reconstruct would allocate this shape (numpy always pickles (0,)).
        limits.check(*_array_bytes(_shape(shape), np.dtype(dtype)))
        self._limits = limits
        self._value: Any = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("unexpected numpy array state")
        version, shape, dtype, fortran, raw = state
        shape, dtype = _shape(shape), _numeric_dtype(dtype)
        self._limits.charge(*_array_bytes(shape, dtype))
        if isinstance(raw, FileBytes):
            self._value = _file_array(raw, dtype, shape, "F" if fortran else "C")
        else:
            array = _numpy_attr(_MULTIARRAY, "_reconstruct")()(np.ndarray, (0,), b"b")
            array.__setstate__((version, shape, dtype, fortran, raw))
            self._value = array

    def value(self) -> Any:
        if self._value is None:
            raise pickle.UnpicklingError("a numpy array without its data")
        return self._value


def _reconstruct(limits: Limits) -> Callable[..., LazyArray]:
    """``numpy.core.multiarray._reconstruct``: a :class:`LazyArray` bounded by ``limits``."""

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> LazyArray:
        return LazyArray(subtype, shape, dtype, limits=limits)

    return reconstruct


def _frombuffer(limits: Limits) -> Callable[..., Any]:
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays), memory-mapping file payloads."""

    def frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> Any:
        shape, dtype = _shape(shape), _numeric_dtype(dtype)
        limits.charge(*_array_bytes(shape, dtype))
        if isinstance(buffer, FileBytes):
            return _file_array(buffer, dtype, shape, order)
        return _numpy_attr(_NUMERIC, "_frombuffer")()(buffer, dtype, shape, order)

    return frombuffer


def _scalar(limits: Limits) -> Callable[..., Any]:
    """``numpy.core.multiarray.scalar``, charged with its dtype's item size."""

    def scalar(dtype: Any, *args: Any) -> Any:
        dtype = np.dtype(dtype)
        limits.charge(dtype.itemsize, f"a numpy {dtype} scalar")
        return _numpy_attr(_MULTIARRAY, "scalar")()(dtype, *args)

    return scalar


def _latin1(limits: Limits) -> Callable[..., bytes]:
    """``_codecs.encode`` as protocol 2 uses it for bytes: latin-1 text to bytes, nothing else.

    Other codecs expand their input (``hex`` doubles it), and calls can be nested, so a few
    hundred bytes could otherwise name gigabytes.
    """

    def encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise HostileFile(
                f"it calls _codecs.encode({type(text).__name__}, {_short(encoding)}), but "
                "pickles encode bytes only as latin-1 text"
            )
        return codecs.encode(text, "latin1", errors)

    return encode


def _copying(cls: type) -> Callable[[Limits], Callable[..., Any]]:
    """A builtin container or ``bytearray`` whose argument is charged before it is copied.

    ``bytearray(6_000_000_000)`` is 20 bytes of pickle; ``bytearray(payload)`` repeated copies
    one payload as often as the file repeats the call. Items count 8 bytes (a pointer) in
    containers, 1 in a ``bytearray``. Keys of the dicts and members of the sets it makes must
    be leaves (:func:`_refuse_key`).
    """
    item = 1 if cls is bytearray else 8

    def resolve(limits: Limits) -> Callable[..., Any]:
        def construct(*args: Any) -> Any:
            if args:
                source = args[0]
                if isinstance(source, int) and not isinstance(source, bool):
                    count = source
                else:
                    try:
                        count = len(source)
                    except TypeError:
                        raise HostileFile(
                            f"it calls {cls.__name__}() on a {type(source).__name__}"
                        ) from None
                limits.charge(count * item, f"{cls.__name__}({_short(source)})")
                if cls in (set, frozenset):
                    for member in source:
                        _refuse_key(member)
                elif cls in (dict, OrderedDict) and not isinstance(source, dict):
                    for pair in source:
                        _refuse_key(pair[0] if isinstance(pair, tuple | list) and pair else pair)
            return cls(*args)

        return construct

    return resolve


#: Every global a ``compile_features.py`` output may name, and how to resolve it for one file's
#: :class:`Limits`.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[Limits], Any]] = {
    **{(m, "_reconstruct"): _reconstruct for m in _MULTIARRAY},
    **{(m, "scalar"): _scalar for m in _MULTIARRAY},
    **{(m, "_frombuffer"): _frombuffer for m in _NUMERIC},
    ("numpy", "ndarray"): lambda limits: NdarrayName,
    ("numpy", "dtype"): lambda limits: np.dtype,
    # Protocol 2 writes bytes as _codecs.encode(text, "latin1"): a pure conversion.
    ("_codecs", "encode"): _latin1,
    **{
        (b, cls.__name__): _copying(cls)
        for b in ("builtins", "__builtin__")
        for cls in (set, frozenset, bytearray, list, dict, tuple)
    },
    ("collections", "OrderedDict"): _copying(OrderedDict),
    ("rasterio.crs", "CRS"): lambda limits: _rasterio_crs(),
    ("affine", "Affine"): lambda limits: AffineState,
}


#: Payloads from this size on stay in the file (memory-mapped) instead of being read.
LAZY_BYTES = 1 << 20

#: What a memo reference (or ``DUP``) may repeat: immutable leaves, and the globals the file
#: names. Containers and built objects are never shared in a published file; repeating them is
#: how a few hundred bytes describe 2**60 objects (``t = (t, t)``) or a cycle.
_SHAREABLE = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    FileBytes,
    np.dtype,
    np.generic,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
)


def _refuse_shared(obj: Any) -> None:
    """Refuse a second reference to ``obj`` unless it is a leaf (see :data:`_SHAREABLE`)."""
    if isinstance(obj, _SHAREABLE) or (isinstance(obj, tuple | frozenset) and not obj):
        return
    raise HostileFile(
        f"it holds a shared reference to a {type(obj).__name__} object, which a "
        "compile_features.py output never has"
    )


#: What a dict key or set member may be. Hashing a tuple recurses in C without a depth limit, so
#: a tuple nested a million deep (one byte of pickle per level) as a key would crash Python; a
#: published file's keys are all strings.
_KEYS = (type(None), bool, int, float, str, bytes, np.generic)


def _refuse_key(key: Any) -> None:
    """Refuse a dict key or set member that is not a leaf (see :data:`_KEYS`)."""
    if not isinstance(key, _KEYS):
        raise HostileFile(
            f"it uses a {type(key).__name__} as a dict key or set member, which a "
            "compile_features.py output never does"
        )


def _cost(obj: Any) -> int:
    """What passing ``obj`` to a call costs: its length for text and bytes (the callee parses or
    copies them), 1 for anything else."""
    return len(obj) if isinstance(obj, str | bytes | bytearray) else 1


def _arguments_cost(args: Any) -> int:
    """:func:`_cost` of a call's arguments (or an object's state), one level deep."""
    if isinstance(args, tuple | list):
        return 1 + sum(_cost(a) for a in args)
    if isinstance(args, dict):
        return 1 + sum(_cost(v) for v in args.values())
    return _cost(args)


def _counted(load: Callable[[Any], None]) -> Callable[[Any], None]:
    """An opcode that counts towards :data:`MAX_OPCODES`."""

    def counted(self: Any) -> None:
        self.opcodes += 1
        if self.opcodes > MAX_OPCODES:
            raise HostileFile(
                f"it runs more than {MAX_OPCODES} pickle opcodes; a compile_features.py output "
                "runs a few hundred"
            )
        load(self)

    return counted


def _unshared(load: Callable[[Any], None]) -> Callable[[Any], None]:
    """An opcode that pushes an object already on the stack or in the memo, checked."""

    def checked(self: Any) -> None:
        load(self)
        _refuse_shared(self.stack[-1])

    return checked


class _BoundedFile:
    """The file as the base unpickler reads it: a read longer than the rest of the file is
    refused before any buffer is allocated (Python's readers allocate the length they are
    asked for, and a pickle's length fields are up to 8 bytes)."""

    def __init__(self, file: Any, size: int) -> None:
        self._file = file
        self._size = size

    def left(self) -> int:
        return self._size - self._file.tell()

    def check(self, length: int) -> None:
        left = self.left()
        if length > left:
            raise HostileFile(
                f"at offset {self._file.tell()} it claims {_size(length)} of data, but only "
                f"{left} bytes of the file remain (the file is truncated or not a pickle)"
            )

    def read(self, length: int) -> bytes:
        self.check(length)
        return self._file.read(length)

    def readline(self) -> bytes:
        return self._file.readline()


class PublishedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; anything else is an error.

    ``find_class`` is called when the pickle names a global, before the global can be called, so
    a refused global never runs. Persistent ids are refused by the base class already.

    It is Python's own pure-Python unpickler with these changes:

    * a large bytes payload outside a protocol-4 frame (numpy writes every big array's data that
      way) is not read but recorded as :class:`FileBytes`, which :class:`LazyArray` memory-maps.
      A 14 GB published file then costs the memory of the strips being converted, not its size.
      The opcode loop runs in Python, but such a file holds only a few hundred opcodes;
    * no read, frame or ``bytearray`` may claim more bytes than the rest of the file holds;
      every allocation, and the text and bytes every call or state receives, is charged to the
      file's :class:`Limits`; at most :data:`MAX_OPCODES` opcodes run;
    * memo references and ``DUP`` may only repeat immutable leaves (:func:`_refuse_shared`), and
      dict keys and set members must be leaves too (:func:`_refuse_key`).

    ``file`` must be seekable: its size bounds everything read from it.
    """

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, *, path: Path) -> None:
        try:  # only a real file can be memory-mapped; anything else is read as usual
            os.fstat(file.fileno())
            self._mappable = True
        except (AttributeError, OSError, ValueError):
            self._mappable = False
        here = file.tell()
        size = file.seek(0, os.SEEK_END) - here
        file.seek(here)
        self._bounded = _BoundedFile(file, here + size)
        super().__init__(self._bounded)
        self.path = path
        self._raw = file
        self.limits = Limits(size)
        self.opcodes = 0

    def _left(self) -> int:
        """Bytes left to read: the rest of the current frame and the rest of the file."""
        frame = self._unframer.current_frame
        in_frame = len(frame.getbuffer()) - frame.tell() if frame is not None else 0
        return in_frame + self._bounded.left()

    def _payload(self, length: int) -> bytes | FileBytes:
        frame = self._unframer.current_frame
        if frame is not None and frame.tell() < len(frame.getbuffer()):
            return self.read(length)  # inside a frame: already in memory
        self._unframer.current_frame = None
        if not self._mappable or length < LAZY_BYTES:
            return self.read(length)
        offset = self._raw.tell()
        self._bounded.check(length)
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

    def _load_bytearray8(self) -> None:
        # The base class allocates the bytearray first, then reads into it.
        (length,) = struct.unpack("<Q", self.read(8))
        left = self._left()
        if length > left:
            raise HostileFile(
                f"a bytearray claims {_size(length)}, but only {left} bytes of the file remain "
                "(the file is truncated or not a pickle)"
            )
        buffer = bytearray(length)
        self.readinto(buffer)
        self.append(buffer)

    def _load_build(self) -> None:
        # BUILD sets an object's state (or, failing __setstate__, its attributes): allow it only
        # on the instances such a file builds, never on a class or function it could rewire, nor
        # on a bare array (numpy trusts an array state's shape; LazyArray checks it first).
        from rasterio.crs import CRS

        target = self.stack[-2] if len(self.stack) > 1 else None
        if not isinstance(target, np.dtype | CRS | AffineState | LazyArray):
            raise pickle.UnpicklingError(
                f"refusing to set the state of a {type(target).__name__} object"
            )
        if not isinstance(target, LazyArray):  # an array charges its own bytes
            self.limits.charge(_arguments_cost(self.stack[-1]), "an object's state")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    def _load_reduce(self) -> None:
        self.limits.charge(_arguments_cost(self.stack[-1]), "a call's arguments")
        pickle._Unpickler.load_reduce(self)  # type: ignore[attr-defined]

    def _load_newobj(self) -> None:
        self.limits.charge(_arguments_cost(self.stack[-1]), "a call's arguments")
        pickle._Unpickler.load_newobj(self)  # type: ignore[attr-defined]

    def _load_newobj_ex(self) -> None:
        cost = _arguments_cost(self.stack[-2]) + _arguments_cost(self.stack[-1])
        self.limits.charge(cost, "a call's arguments")
        pickle._Unpickler.load_newobj_ex(self)  # type: ignore[attr-defined]

    def _load_inst(self) -> None:
        self.limits.charge(_arguments_cost(self.stack), "a call's arguments")
        pickle._Unpickler.load_inst(self)  # type: ignore[attr-defined]

    def _load_obj(self) -> None:
        self.limits.charge(_arguments_cost(self.stack), "a call's arguments")
        pickle._Unpickler.load_obj(self)  # type: ignore[attr-defined]

    def _load_setitem(self) -> None:
        _refuse_key(self.stack[-2])
        pickle._Unpickler.load_setitem(self)  # type: ignore[attr-defined]

    def _load_setitems(self) -> None:
        for key in self.stack[0::2]:  # the items since the mark: key, value, key, value, …
            _refuse_key(key)
        pickle._Unpickler.load_setitems(self)  # type: ignore[attr-defined]

    def _check_set_members(self) -> None:
        for member in self.stack:  # the items since the mark
            _refuse_key(member)

    def _load_additems(self) -> None:
        self._check_set_members()
        pickle._Unpickler.load_additems(self)  # type: ignore[attr-defined]

    def _load_frozenset(self) -> None:
        self._check_set_members()
        pickle._Unpickler.load_frozenset(self)  # type: ignore[attr-defined]

    dispatch[pickle.BINBYTES[0]] = _load_binbytes
    dispatch[pickle.BINBYTES8[0]] = _load_binbytes8
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.INST[0]] = _load_inst
    dispatch[pickle.OBJ[0]] = _load_obj
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.ADDITEMS[0]] = _load_additems
    dispatch[pickle.FROZENSET[0]] = _load_frozenset
    dispatch[pickle.GET[0]] = _unshared(pickle._Unpickler.load_get)  # type: ignore[attr-defined]
    dispatch[pickle.BINGET[0]] = _unshared(pickle._Unpickler.load_binget)  # type: ignore[attr-defined]
    dispatch[pickle.LONG_BINGET[0]] = _unshared(pickle._Unpickler.load_long_binget)  # type: ignore[attr-defined]
    dispatch[pickle.DUP[0]] = _unshared(pickle._Unpickler.load_dup)  # type: ignore[attr-defined]
    dispatch = {code: _counted(load) for code, load in dispatch.items()}

    def load(self) -> Any:
        return _resolve_lazy(super().load(), self.limits)

    def find_class(self, module: str, name: str) -> Any:
        resolver = ALLOWED_GLOBALS.get((module, name))
        if resolver is None:
            raise InputError(
                f"{self.path} names the Python global {module}.{name}, which a published "
                "compile_features.py file never contains; refusing to unpickle it (glaviz "
                "loads only numpy arrays, plain containers, rasterio CRS and affine transforms "
                "from these files). Do not open this file with pickle anywhere else either"
            )
        return resolver(self.limits)


def _resolve_lazy(obj: Any, limits: Limits, depth: int = 0, seen: set[int] | None = None) -> Any:
    """Replace the :class:`LazyArray` and :class:`FileBytes` stand-ins by arrays and bytes.

    Each container is visited once: the unpickler lets only leaves be shared, and a container
    met twice here is refused rather than walked again (walking shared objects as a tree is
    exponential in the nesting).
    """
    seen = set() if seen is None else seen
    if isinstance(obj, LazyArray):
        return obj.value()
    if isinstance(obj, FileBytes):
        limits.charge(obj.length, f"a payload of {_size(obj.length)}")
        return obj.read()
    if not isinstance(obj, dict | list | tuple) or not obj:
        return obj
    if depth >= MAX_DEPTH:
        raise HostileFile(f"its objects nest deeper than {MAX_DEPTH} levels")
    if id(obj) in seen:
        _refuse_shared(obj)
    seen.add(id(obj))
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _resolve_lazy(value, limits, depth + 1, seen)
        return obj
    if isinstance(obj, list):
        obj[:] = [_resolve_lazy(v, limits, depth + 1, seen) for v in obj]
        return obj
    return tuple(_resolve_lazy(v, limits, depth + 1, seen) for v in obj)


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
        except HostileFile as exc:
            raise InputError(f"{path} is not a compile_features.py output: {exc}") from None
        except MemoryError:
            raise InputError(
                f"not enough memory to read {path} ({_size(size)}); it holds more small "
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
    if len(features) > MAX_FEATURES:
        raise bad(f"it has {len(features)} features")
    try:
        h, w, ph, pw = (int(attrs[k]) for k in ("height", "width", "pad_height", "pad_width"))
    except (TypeError, ValueError, OverflowError):
        raise bad("height, width, pad_height and pad_width must be integers") from None
    meta = attrs["meta"]
    if not isinstance(meta, dict):
        raise bad("attrs['meta'] is not a dict")
    from rasterio.crs import CRS

    crs, transform = meta.get("crs"), meta.get("transform")
    if not isinstance(crs, CRS):
        raise bad(f"meta['crs'] is {_short(crs)}, not a rasterio CRS (the scene needs one)")
    if not isinstance(transform, AffineState):
        raise bad(f"meta['transform'] is {_short(transform)}, not an affine transform")
    try:
        transform = transform.to_affine()
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not transform.is_rectilinear:
        raise bad("the transform is rotated; glaviz stacks are north-up")
    missing = [g for g in REQUIRED_GROUPS if g not in features]
    if missing:
        raise bad(f"features lack {', '.join(missing)} (it has {_short(list(features))})")

    arrays: dict[str, np.ndarray] = {}
    coordinates: dict[str, np.ndarray] = {}
    padded: tuple[int, ...] | None = None
    for key, value in features.items():
        if key not in GROUP_BANDS and key not in COORDINATE_KEYS:
            log.warning("%s: skipping feature %s, which is no GlaViTU input", path, _short(key))
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
        if key not in meta:
            continue
        try:
            stored = int(meta[key])
        except (TypeError, ValueError, OverflowError):
            raise bad(f"meta[{key!r}] is {_short(meta[key])}, not an integer") from None
        if stored != label:
            raise bad(f"meta[{key!r}] = {stored} but attrs[{key!r}] = {label}")
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
