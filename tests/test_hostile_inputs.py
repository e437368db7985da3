"""The fault tour of glaviz, repeated on every run: hostile and newcomer inputs (parts A–C).

Each test is one attack of the tour and fails on the code before the fix. Attacks that could
exhaust the machine run in a child process under an address-space cap and a timeout
(:mod:`tests.capped`), so a regression fails the test instead of killing the machine. Sections:

- A1, A4: hostile files — published feature pickles and model bundles built to exhaust the machine.
- A2, A3, B5, B6, D14, D15: deploy and calibrate — sizes, disk, radiometry, CRS, broken files.
- B9: weights served or imported under a registry name that are not that model's file.
- B7, B8, C10–C13: wrong inventories, stale records, leftovers of failed or killed runs.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
import os
import pickle
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin

from glaviz.cli.app import main
from glaviz.config import DeployConfig
from glaviz.engine.deploy import deploy
from glaviz.errors import GlavizError, WeightsError
from glaviz.model.glavitu import PRESETS
from glaviz.published.groups import GROUP_STACK_BANDS
from glaviz.registry import fetch_model, import_model, resolve_weights
from glaviz.registry.download import RetryPolicy
from glaviz.runs.atomic import atomic_path, write_text_atomic
from glaviz.runs.outputs import LOCK_NAME, OutputFolder
from glaviz.samples import make_scene
from tests.capped import Outcome, glaviz, run_capped
from tests.fake_servers import FakeServer, running_server
from tests.helpers import error_line, write_keras2_checkpoint, write_stack

# ==================================================================================================
# A1, A4: hostile files — published feature pickles and model bundles built to exhaust the machine
# ==================================================================================================


#: The cap of every child: Python, numpy and rasterio start well inside it.
MEMORY = 2 << 30
#: Kill a child that is still running after this long (the old readers ran for minutes).
TIMEOUT = 20.0
#: Wall time an attack may take on a loaded 2-core machine (it takes well under a second alone).
FILE_SECONDS = 5.0
#: Peak resident memory an attack may reach: a refused one peaks near 80 MB, a valid file's
#: conversion near 100 MB, while the old readers ran into the 2 GiB cap.
PEAK_MB = 400

_PEAK = "peak_rss_mb="

#: Prints the process's peak resident memory. ``VmHWM`` counts only this program: ``ru_maxrss``
#: would include the memory of the parent at the fork.
_REPORT_PEAK = f"""
    with open("/proc/self/status") as status:
        peak = [line.split()[1] for line in status if line.startswith("VmHWM")]
    print("{_PEAK}%d" % (int(peak[0]) // 1024), file=sys.stderr)
"""

#: ``glaviz ARGV…`` that reports its peak resident memory on its last stderr line.
_CLI = f"""
import sys
from glaviz.cli.app import main
try:
    code = main(sys.argv[1:])
finally:
{_REPORT_PEAK}
sys.exit(code)
"""

#: ``load_bundle(PATH)`` with the CLI's one-line error, whether TensorFlow was imported, and the
#: peak resident memory.
_BUNDLE = f"""
import sys
from glaviz.errors import GlavizError
from glaviz.model.bundle import load_bundle
code = 0
try:
    load_bundle(sys.argv[1])
except GlavizError as exc:
    print(f"Error: {{exc}}", file=sys.stderr)
    code = exc.exit_code
finally:
    print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
{_REPORT_PEAK}
sys.exit(code)
"""


@dataclass(frozen=True)
class Attack:
    """What one capped child did, with its peak memory parsed from its stderr."""

    outcome: Outcome
    peak_mb: int | None

    @property
    def error_lines(self) -> list[str]:
        return self.outcome.error_lines


def _attack(code: str, *argv: str, env: dict[str, str] | None = None) -> Attack:
    outcome = run_capped(
        [sys.executable, "-c", code, *argv], memory=MEMORY, timeout=TIMEOUT, env=env
    )
    peaks = re.findall(rf"{_PEAK}(\d+)", outcome.stderr)
    return Attack(outcome, int(peaks[-1]) if peaks else None)


def features_cli(source: Path, tmp_path: Path) -> Attack:
    """``glaviz features --from-published SOURCE -o OUT`` in a capped child."""
    out = tmp_path / "stack.tif"
    return _attack(_CLI, "features", "--from-published", str(source), "-o", str(out))


def bundle_reader(bundle: Path, scratch: Path) -> Attack:
    """:func:`glaviz.model.bundle.load_bundle` of ``bundle`` in a capped child whose temporary
    files go to ``scratch`` (``TMPDIR``), so a test can check that none were written."""
    scratch.mkdir(exist_ok=True)
    return _attack(_BUNDLE, str(bundle), env={"TMPDIR": str(scratch)})


def assert_refused(attack: Attack, cause: str, *, name: str) -> None:
    """Exit 1 with one ``Error:`` line matching ``cause``, fast and in little memory."""
    outcome = attack.outcome
    # The measured figures, shown with ``pytest -s``.
    print(
        f"\n{name}: exit {outcome.returncode} in {outcome.seconds:.2f} s, peak {attack.peak_mb} MB"
    )
    assert not outcome.timed_out, f"{name}: still running after {outcome.seconds:.0f} s"
    assert outcome.returncode == 1, f"{name}: exit {outcome.returncode}\n{outcome.stderr[-3000:]}"
    assert len(attack.error_lines) == 1, outcome.stderr[-3000:]
    line = attack.error_lines[0]
    print(f"  {line}")
    assert re.search(cause, line), line
    assert outcome.seconds < FILE_SECONDS, f"{name}: took {outcome.seconds:.1f} s"
    assert attack.peak_mb is not None and attack.peak_mb < PEAK_MB, f"peak {attack.peak_mb} MB"


# --------------------------------------------------------------------------------------------------
# Published feature pickles


class Forged:
    """Pickles as an arbitrary ``reduce`` tuple: a call of an allowed global with chosen args."""

    def __init__(self, *reduce: Any) -> None:
        self.reduce = reduce

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduce


def _numpy(module: str, name: str) -> Any:
    """A numpy internal by the name its pickles use (``numpy._core`` in numpy 2)."""
    import importlib

    return getattr(importlib.import_module(f"numpy._core.{module}"), name)


def published_like(*, seed: int = 0, size: int = 160) -> tuple[dict[str, Any], dict[str, Any]]:
    """A small ``(features, attrs)`` pair in the published layout, padded like the original."""
    rng = np.random.default_rng(seed)
    height, width, pad_height, pad_width = size - 12, size - 9, 6, 4
    features = {
        "optical": rng.uniform(0.1, 0.9, (size, size, 6)),
        "dem": rng.uniform(0.1, 0.9, (size, size, 2)),
    }
    meta = {
        "driver": "GTiff",
        "dtype": None,
        "nodata": None,
        "width": width,
        "height": height,
        "count": -1,
        "crs": CRS.from_epsg(32632),
        "transform": Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5100000.0),
    }
    attrs = {
        "height": height,
        "width": width,
        "pad_height": pad_height,
        "pad_width": pad_width,
        "meta": meta,
    }
    return features, attrs


def with_optical(optical: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A published-like pair whose ``optical`` feature is ``optical``."""
    features, attrs = published_like(size=16)
    return {**features, "optical": optical}, attrs


def shared_tuples(levels: int = 60) -> Any:
    """``t = (t, t)`` ``levels`` times: 2**levels references to a few dozen tuples."""
    t: Any = (0,)
    for _ in range(levels):
        t = (t, t)
    return t


def shared_lists(levels: int = 60) -> Any:
    """``l = [l, l]`` ``levels`` times: walking it as a tree never ends."""
    items: Any = [0]
    for _ in range(levels):
        items = [items, items]
    return items


#: Pickled objects (protocol 4), each with the cause its one ``Error:`` line must name.
PICKLE_ATTACKS: dict[str, tuple[Any, str]] = {
    "shared tuple": (shared_tuples(), r"shared reference to a tuple"),
    "shared list": (shared_lists(), r"shared reference to a list"),
    "shared tuple in attrs": (
        (published_like(size=16)[0], {"meta": shared_tuples()}),
        r"shared reference to a tuple",
    ),
    "bytearray(6e9)": (Forged(bytearray, (6_000_000_000,)), r"6\.0 GB.*file of \d+ bytes"),
    "hex codec chain": (
        Forged(codecs.encode, (Forged(codecs.encode, ("glacier", "latin1")), "hex")),
        r"encode.*'hex'",
    ),
    "copies of one payload": (
        [Forged(bytearray, (payload,)) for payload in [bytes(256 << 10)] for _ in range(10_000)],
        r"more than the file of \d+ bytes can hold",
    ),
    "ndarray constructor": (
        with_optical(Forged(np.ndarray, ((20_000, 20_000, 6), np.dtype("f8")))),
        r"numpy\.ndarray",
    ),
    "object array header": (
        with_optical(
            Forged(
                _numpy("multiarray", "_reconstruct"),
                (np.ndarray, (0,), b"b"),
                (1, (100_000_000,), np.dtype("O"), False, []),
            )
        ),
        r"object",
    ),
    "huge array header": (
        with_optical(
            Forged(
                _numpy("multiarray", "_reconstruct"),
                (np.ndarray, (0,), b"b"),
                (1, (200_000, 200_000, 6), np.dtype("f8"), False, b""),
            )
        ),
        r"shape \(200000, 200000, 6\) float64 needs 1\.9 TB.*file of \d+ bytes",
    ),
    "huge reconstruct shape": (
        with_optical(
            Forged(_numpy("multiarray", "_reconstruct"), (np.ndarray, (200_000, 200_000, 6), b"b"))
        ),
        r"shape \(200000, 200000, 6\) int8 needs 240\.0 GB.*file of \d+ bytes",
    ),
    "one payload mapped many times": (
        [
            Forged(_numpy("numeric", "_frombuffer"), (payload, np.dtype("u1"), [1 << 20], "C"))
            for payload in [bytes(1 << 20)]
            for _ in range(5_000)
        ],
        r"more than the file of \d+ bytes can hold",
    ),
}

#: Opcodes written by hand: lengths the pickle module never writes for data that is not there.
RAW_ATTACKS: dict[str, tuple[bytes, str]] = {
    # BYTEARRAY8 claiming 6 GB, then STOP: 12 bytes.
    "BYTEARRAY8 of 6e9": (b"\x80\x05\x96" + struct.pack("<Q", 6_000_000_000) + b".", r"6\.0 GB"),
    # BINUNICODE8 and FRAME claiming 6 GB.
    "BINUNICODE8 of 6e9": (b"\x80\x04\x8d" + struct.pack("<Q", 6_000_000_000) + b".", r"6\.0 GB"),
    "FRAME of 6e9": (b"\x80\x04\x95" + struct.pack("<Q", 6_000_000_000) + b".", r"6\.0 GB"),
    # A list appended to itself through DUP, no memo involved.
    "DUP cycle": (b"\x80\x04]2a.", r"shared reference to a list"),
    # 8 million EMPTY_SET opcodes: 8 MB of file, 200 bytes of memory each.
    "opcode flood": (b"\x80\x04" + b"\x8f" * (8 << 20) + b".", r"more than 100000 pickle opcodes"),
    # A tuple nested a million deep (TUPLE1, one byte a level) as a dict key: hashing it recurses
    # in C until the stack overflows. Either the opcode count or the key check refuses it.
    "deep tuple key": (
        b"\x80\x04}K\x00" + b"\x85" * 1_000_000 + b"Ns.",
        r"more than 100000 pickle opcodes|uses a tuple as a dict key",
    ),
}


@pytest.mark.parametrize("name", list(PICKLE_ATTACKS))
def test_hostile_pickles_are_refused_quickly(name: str, tmp_path: Path) -> None:
    obj, cause = PICKLE_ATTACKS[name]
    source = tmp_path / "area_features.pickle"
    source.write_bytes(pickle.dumps(obj, protocol=4))
    assert source.stat().st_size < 2 << 20  # the whole attack is a small file
    attack = features_cli(source, tmp_path)
    assert_refused(attack, rf"{re.escape(str(source))}.*{cause}", name=name)
    assert not (tmp_path / "stack.tif").exists()


@pytest.mark.parametrize("name", list(RAW_ATTACKS))
def test_hand_written_opcodes_are_refused_quickly(name: str, tmp_path: Path) -> None:
    raw, cause = RAW_ATTACKS[name]
    source = tmp_path / "area_features.pickle"
    source.write_bytes(raw)
    attack = features_cli(source, tmp_path)
    assert_refused(attack, rf"{re.escape(str(source))}.*{cause}", name=name)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_valid_file_converts_under_the_same_caps(protocol: int, tmp_path: Path) -> None:
    # The control: the caps and limits leave a real published-layout file alone, in every
    # protocol numpy arrays are pickled with (protocol 2 encodes their bytes as latin-1 text).
    source = tmp_path / "area_features.pickle"
    source.write_bytes(pickle.dumps(published_like(seed=protocol), protocol=protocol))
    attack = features_cli(source, tmp_path)
    seconds = attack.outcome.seconds
    print(
        f"\nvalid, protocol {protocol}: exit {attack.outcome.returncode} in {seconds:.2f} s, "
        f"peak {attack.peak_mb} MB"
    )
    assert attack.outcome.returncode == 0, attack.outcome.stderr[-3000:]
    assert (tmp_path / "stack.tif").is_file()
    assert attack.peak_mb is not None and attack.peak_mb < PEAK_MB


# --------------------------------------------------------------------------------------------------
# Model bundles

#: A small architecture in the bundle format; the attacks change what they need.
ARCHITECTURE: dict[str, Any] = {
    "feature_groups": {"optical": 6, "dem": 2},
    "patch_size": 32,
    **PRESETS["tiny"],
}


def metadata(**architecture: Any) -> bytes:
    """``glaviz.json`` of a bundle with :data:`ARCHITECTURE` updated by ``architecture``."""
    meta = {
        "format": "glaviz-model-bundle",
        "format_version": 1,
        "architecture": {**ARCHITECTURE, **architecture},
    }
    return json.dumps(meta).encode()


def weights_stand_in(seed: int = 0) -> bytes:
    """Bytes where the weights go: every attack is refused before they are read."""
    return np.random.default_rng(seed).bytes(4096)


def write_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with (
        warnings.catch_warnings(),  # "Duplicate name" is the point of one attack
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        warnings.simplefilter("ignore")
        for name, data in members:
            archive.writestr(name, data)
    return path


#: Zeros in the zip bomb: 240 × 16 MiB = 3.75 GiB, just under the 4 GiB of a plain zip header.
BOMB_BLOCK = 16 << 20
BOMB_BLOCKS = 240


def write_bomb(path: Path, blocks: int = BOMB_BLOCKS) -> Path:
    """A bundle whose weights inflate to ``blocks`` × 16 MiB of zeros (3.75 GiB from 4 MB).

    The deflate stream is built without compressing gigabytes: after a full flush the compressor
    starts afresh, so every 16 MiB block of zeros compresses to the same bytes, which are
    repeated. The sizes and CRC in the headers are the true ones: this is a valid zip file.
    """
    zeros = bytes(BOMB_BLOCK)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * blocks + compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    members = [
        ("glaviz.json", metadata(), zipfile.ZIP_STORED, None, None),
        ("model.weights.h5", stream, zipfile.ZIP_DEFLATED, crc, BOMB_BLOCK * blocks),
    ]
    local, central = bytearray(), bytearray()
    for name, data, method, member_crc, size in members:
        crc_of = zlib.crc32(data) if member_crc is None else member_crc
        size_of = len(data) if size is None else size
        encoded = name.encode()
        central += struct.pack(
            "<4s6H3L5H2L",
            *(b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc_of, len(data), size_of),
            *(len(encoded), 0, 0, 0, 0, 0, len(local)),
        )
        central += encoded
        header = (b"PK\x03\x04", 20, 0, method, 0, 0x21, crc_of, len(data), size_of)
        local += struct.pack("<4s5H3L2H", *header, len(encoded), 0) + encoded + data
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 2, 2, len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path


def test_zip_bomb_bundle(tmp_path: Path) -> None:
    bomb = write_bomb(tmp_path / "bomb.glaviz")
    assert bomb.stat().st_size < 5 << 20
    with zipfile.ZipFile(bomb) as archive:  # a well-formed archive, sizes declared truthfully
        assert archive.getinfo("model.weights.h5").file_size == BOMB_BLOCK * BOMB_BLOCKS
    attack = bundle_reader(bomb, tmp_path / "tmp")
    assert_refused(attack, rf"{re.escape(str(bomb))}.*model\.weights\.h5.*GB", name="zip bomb")
    assert "tensorflow imported: False" in attack.outcome.stderr
    assert not list((tmp_path / "tmp").iterdir())  # nothing extracted


def test_zip_bomb_through_deploy(tmp_path: Path) -> None:
    # The real command: deploy inspects the bundle before it imports TensorFlow.
    from glaviz.features import compile_stack
    from glaviz.samples import make_scene

    bomb = write_bomb(tmp_path / "bomb.glaviz")
    files = make_scene(tmp_path / "raw", size=(40, 40), seed=5)
    stack = compile_stack(
        output=tmp_path / "stack.tif", optical=files.optical, elevation=files.elevation
    ).path
    out = tmp_path / "out"
    attack = _attack(_CLI, "deploy", str(stack), "--weights", str(bomb), "-o", str(out))
    assert_refused(attack, rf"{re.escape(str(bomb))}.*model\.weights\.h5.*GB", name="deploy bomb")
    assert not out.exists() or not any(out.iterdir())


def test_small_zip_bomb_bundle(tmp_path: Path) -> None:
    # 192 MiB of zeros, under the size limit of weights, but inflating 1000:1 as no weights do.
    bomb = write_bomb(tmp_path / "bomb.glaviz", blocks=12)
    attack = bundle_reader(bomb, tmp_path / "tmp")
    assert_refused(attack, rf"{re.escape(str(bomb))}.*inflate \d{{4}} times", name="small bomb")
    assert "tensorflow imported: False" in attack.outcome.stderr
    assert not list((tmp_path / "tmp").iterdir())


BUNDLE_ATTACKS: dict[str, tuple[list[tuple[str, bytes]], str]] = {
    "path traversal": (
        [("glaviz.json", metadata()), ("model.weights.h5", weights_stand_in()), ("../x", b"x")],
        r"'\.\./x'",
    ),
    "absolute member name": (
        [("glaviz.json", metadata()), ("model.weights.h5", weights_stand_in()), ("/etc/x", b"")],
        r"'/etc/x'",
    ),
    "too many members": (
        [("glaviz.json", metadata()), ("model.weights.h5", weights_stand_in())]
        + [(f"m{i}", b"") for i in range(5_000)],
        r"5002 members",
    ),
    "duplicate metadata": (
        [
            ("glaviz.json", metadata()),
            ("model.weights.h5", weights_stand_in()),
            ("glaviz.json", metadata(width=2)),
        ],
        r"glaviz\.json.*twice",
    ),
    "huge metadata": (
        [("glaviz.json", b" " * (64 << 20) + metadata()), ("model.weights.h5", b"")],
        r"glaviz\.json",
    ),
    "inflated width": (
        [("glaviz.json", metadata(width=65_536)), ("model.weights.h5", weights_stand_in())],
        r"architecture\.width.*less than or equal to 256",
    ),
    "inflated blocks and heads": (
        [
            ("glaviz.json", metadata(blocks=100_000, heads=1024, embedding=1024)),
            ("model.weights.h5", weights_stand_in()),
        ],
        r"architecture\.\w+.*less than or equal to",
    ),
    "inflated patch": (
        [("glaviz.json", metadata(patch_size=65_536)), ("model.weights.h5", weights_stand_in())],
        r"architecture\.patch_size.*less than or equal to 1024",
    ),
    "inflated U-Net": (
        [
            ("glaviz.json", metadata(unet_steps=5, unet_filters=256, patch_size=256)),
            ("model.weights.h5", weights_stand_in()),
        ],
        r"unet_filters × 2\*\*unet_steps",
    ),
    "inflated feature group": (
        [
            ("glaviz.json", metadata(feature_groups={"optical": 1_000_000})),
            ("model.weights.h5", weights_stand_in()),
        ],
        r"feature_groups.*'optical'.*1000000 bands",
    ),
    "metadata not an object": (
        [("glaviz.json", b"[1, 2, 3]"), ("model.weights.h5", weights_stand_in())],
        r"not a JSON object",
    ),
    "deeply nested metadata": (
        [("glaviz.json", b"[" * 100_000 + b"]" * 100_000), ("model.weights.h5", b"")],
        r"glaviz\.json",
    ),
}


@pytest.mark.parametrize("name", list(BUNDLE_ATTACKS))
def test_hostile_bundles_are_refused_before_building(name: str, tmp_path: Path) -> None:
    members, cause = BUNDLE_ATTACKS[name]
    bundle = write_zip(tmp_path / "hostile.glaviz", members)
    attack = bundle_reader(bundle, tmp_path / "tmp")
    assert_refused(attack, rf"{re.escape(str(bundle))}.*{cause}", name=name)
    assert "tensorflow imported: False" in attack.outcome.stderr
    assert not list((tmp_path / "tmp").iterdir())  # nothing extracted


# ==================================================================================================
# A2, A3, B5, B6, D14, D15: deploy and calibrate — sizes, disk, radiometry, CRS, broken files
# ==================================================================================================


#: Wall time a refusal before TensorFlow may take in a child on a loaded 2-core machine (it takes
#: about 0.4 s alone; starting TensorFlow takes 3-7 s).
DEPLOY_SECONDS = 3.0


@pytest.fixture
def no_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make importing TensorFlow fail, so that a check that ran after it fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("TensorFlow was imported before the check")

    monkeypatch.setattr("glaviz.util.tf.import_tensorflow", refuse)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stack(tmp_path_factory.mktemp("stack") / "stack.tif", height=70, width=90)


def _rewrite(source: Path, target: Path, *, dtype: str, optical: object) -> Path:
    """``source`` with its optical bands replaced by ``optical(values)``, stored as ``dtype``."""
    with rasterio.open(source) as ds:
        data, profile, names = ds.read(), ds.profile, ds.descriptions
    data[:6] = optical(data[:6])  # type: ignore[operator]
    with rasterio.open(target, "w", **{**profile, "dtype": dtype}) as out:
        out.write(data.astype(dtype))
        for i, name in enumerate(names, start=1):
            out.set_band_description(i, name)
    return target


def _sparse_stack(path: Path, size: int) -> Path:
    """A stack that declares ``size × size`` pixels of optical and DEM bands and holds no data:
    a tiled, sparse GeoTIFF of a few hundred kB."""
    names = [*GROUP_STACK_BANDS["optical"], *GROUP_STACK_BANDS["dem"]]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=len(names),
        dtype="float32",
        crs="EPSG:32632",
        transform=from_origin(500000, 5200000, 10, 10),
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        interleave="pixel",
        compress="deflate",
        sparse_ok=True,
        BIGTIFF="YES",
    ) as ds:
        for i, name in enumerate(names, start=1):
            ds.set_band_description(i, name)
    return path


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def _open_files(folder: Path) -> list[str]:
    """Files under ``folder`` that this process holds open (deleted ones included)."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(folder)):
                held.append(target)
    return held


# --------------------------------------------------------------------------------------------------
# A2: a scene too large for the disk; a set-up that fails closes what it opened


def test_a_scene_too_large_for_the_disk_is_refused_before_tensorflow(tmp_path: Path) -> None:
    # What deploy counts (engine.outputs.disk_space_needed): the outlines and confidence streams,
    # 5 bytes per pixel, and the confidence COG uncompressed with its overviews, 4 × 4/3.
    needed = 200_000**2 * (5 + 4 * 4 / 3)
    if shutil.disk_usage(tmp_path).free >= needed:
        pytest.skip("this disk has room for the outputs of a 200000² scene")
    huge = _sparse_stack(tmp_path / "huge.tif", 200_000)
    assert huge.stat().st_size < 4 << 20
    out = tmp_path / "out"
    outcome = glaviz("deploy", str(huge), "--weights", "demo", "-o", str(out), timeout=30)
    assert not outcome.timed_out, outcome.stderr
    assert outcome.returncode == 1, outcome.stderr
    assert outcome.error_lines == outcome.stderr.strip().splitlines(), outcome.stderr
    line = outcome.error_lines[0]
    assert "disk space" in line and "GiB" in line and "free" in line and "-o" in line
    assert outcome.seconds < DEPLOY_SECONDS  # no TensorFlow (it cannot start under this cap either)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.tif"]


def test_a_writer_that_fails_to_start_closes_the_reader_and_its_own_files(
    stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL refuses the second streamed file (its free-space check): the first, already open,
    must be closed, not filled with nodata at exit, and the reader's threads must stop."""
    real_open = rasterio.open

    def open_until_full(path: object, mode: str = "r", **kwargs: object) -> object:
        if mode == "w" and "confidence" in str(path):
            raise rasterio.errors.RasterioIOError(
                "Free disk space available is 4096 bytes, whereas 160307347456 are at least "
                "necessary. You can disable this check by defining the CHECK_DISK_FREE_SPACE "
                "configuration option to FALSE."
            )
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(rasterio, "open", open_until_full)
    out = tmp_path / "out"
    before = set(_threads("glaviz-read"))
    with pytest.raises(GlavizError, match=r"cannot write .*confidence\.tif: no space left"):
        deploy(DeployConfig(stack=stack, weights="demo", output=out))
    assert set(_threads("glaviz-read")) <= before
    assert _open_files(tmp_path) == []
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# A3: sizes without an upper bound


def _predictions(path: Path, *, size: int) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as file:
        group = file.create_group("ALP-0-0")
        stated = rng.random((size, size))
        group.create_dataset("prob", data=np.stack([1 - stated, stated], -1).astype(np.float32))
        group.create_dataset("true", data=(rng.random((size, size)) < stated).astype(np.uint8))
        group.attrs["region"], group.attrs["subregion"] = "ALP", "ALP1"
    return path


def test_calibrate_refuses_a_billion_bins_at_once(tmp_path: Path) -> None:
    predictions = _predictions(tmp_path / "val.h5", size=16)
    out = tmp_path / "cal.json"
    args = ("calibrate", str(predictions), "-o", str(out), "--bins", "1000000000")
    outcome = glaviz(*args, timeout=30)
    assert not outcome.timed_out
    assert outcome.returncode == 2, outcome.stderr
    assert len(outcome.error_lines) == 1 and "bins" in outcome.error_lines[0]
    assert outcome.seconds < DEPLOY_SECONDS
    assert not out.exists()


def test_calibrate_refuses_more_bins_than_pixels(tmp_path: Path, capsys) -> None:
    predictions = _predictions(tmp_path / "val.h5", size=16)
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(predictions), "-o", str(out), "--bins", "500"]) == 2
    line = error_line(capsys)
    assert "--bins 500" in line and "256 pixels" in line and "at most 256" in line
    assert not out.exists()
    assert main(["calibrate", str(predictions), "-o", str(out), "--bins", "20"]) == 0


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--smoothing", "1000000", "smoothing"),
        ("--smoothing", "101", "short side"),  # allowed in general, but the scene is 70 × 90
        ("--batch-size", "1000000000", "batch_size"),
    ],
)
def test_deploy_sizes_are_refused_before_any_work(
    option: str, value: str, words: str, stack: Path, tmp_path: Path, capsys, no_tensorflow
) -> None:
    out = tmp_path / "out"
    started = time.perf_counter()
    assert main(["deploy", str(stack), "--weights", "demo", "-o", str(out), option, value]) == 2
    assert words in error_line(capsys)
    assert time.perf_counter() - started < 2.0
    assert not out.exists()


def test_choosing_a_batch_size_is_instant_whatever_the_request() -> None:
    code = "from glaviz.engine.loop import best_batch_size; print(best_batch_size(10, 10**9))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert done.stdout.strip() == "10", done.stderr
    started = time.perf_counter()
    from glaviz.engine.loop import best_batch_size

    assert best_batch_size(10, 10**9) == 10 and best_batch_size(9, 4) == 3
    assert time.perf_counter() - started < 0.5


# --------------------------------------------------------------------------------------------------
# B5: digital numbers; B6: no CRS


@pytest.mark.parametrize(
    ("dtype", "optical", "words"),
    [
        ("uint16", lambda v: np.nan_to_num(v) * 10_000, ["uint16", "10000", "glaviz features"]),
        ("float32", lambda v: v * 10_000, ["optical values reach", "10000"]),
        ("float32", lambda v: np.where(np.isnan(v), -9999.0, v), ["-9999", "nodata"]),
    ],
    ids=["uint16-digital-numbers", "float-digital-numbers", "undeclared-fill-value"],
)
def test_what_cannot_be_reflectance_is_refused(
    dtype: str,
    optical: object,
    words: list[str],
    stack: Path,
    tmp_path: Path,
    capsys,
    no_tensorflow,
) -> None:
    bad = _rewrite(stack, tmp_path / "bad.tif", dtype=dtype, optical=optical)
    out = tmp_path / "out"
    assert main(["deploy", str(bad), "--weights", "demo", "-o", str(out)]) == 1
    line = error_line(capsys)
    assert str(bad) in line and all(w in line for w in words), line
    assert not out.exists()


def test_features_warns_about_digital_numbers_with_deploys_check(
    tmp_path: Path, capsys, caplog
) -> None:
    """One radiometry check: ``glaviz features`` warns in the words deploy refuses with."""
    from glaviz.features.stack import compile_stack
    from glaviz.samples import make_scene

    files = make_scene(tmp_path / "scene", size=(64, 64), seed=3)
    digital = _rewrite(
        files.optical, tmp_path / "dn.tif", dtype="float32", optical=lambda v: v * 1e4
    )
    caplog.set_level(logging.WARNING, logger="glaviz")
    compile_stack(output=tmp_path / "stack.tif", optical=digital, elevation=files.elevation)
    capsys.readouterr()  # the warning, when an earlier command sent glaviz's log to stderr
    warned = [r.getMessage() for r in caplog.records if "optical values reach" in r.getMessage()]
    assert len(warned) == 1 and "10000" in warned[0]
    out = tmp_path / "out"
    assert main(["deploy", str(tmp_path / "stack.tif"), "--weights", "demo", "-o", str(out)]) == 1
    assert error_line(capsys).endswith(warned[0])  # the whole scene is one sampled window


def test_a_stack_without_crs_is_refused(tmp_path: Path, capsys, no_tensorflow) -> None:
    no_crs = write_stack(tmp_path / "nocrs.tif", crs=None)
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["deploy", str(no_crs), "--weights", "demo", "-o", str(out)]) == 1
    line = error_line(capsys)
    assert "no CRS" in line and "gdal_edit.py -a_srs" in line and str(no_crs) in line
    assert not [w for w in caught if "crs" in str(w.message).lower()]  # pyogrio's, before
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# D14: one line for broken files, read-only folders, full disks and exhausted memory


def _truncated(source: Path, target: Path) -> Path:
    """``source`` rewritten with its header first (a COG) and then cut: the header and the
    first tiles read, the rest is missing, as after an interrupted copy."""
    import rasterio.shutil

    whole = target.with_suffix(".whole.tif")
    rasterio.shutil.copy(source, whole, driver="COG", BLOCKSIZE=64, COMPRESS="DEFLATE")
    data = whole.read_bytes()
    target.write_bytes(data[: len(data) * 6 // 10])
    whole.unlink()
    return target


def test_a_truncated_stack_is_one_line(tmp_path: Path, capsys, no_tensorflow) -> None:
    scene = write_stack(tmp_path / "scene.tif", height=256, width=256)
    cut = _truncated(scene, tmp_path / "cut.tif")
    out = tmp_path / "out"
    assert main(["deploy", str(cut), "--weights", "demo", "-o", str(out)]) == 1
    line = error_line(capsys)
    assert str(cut) in line and "damaged or incomplete" in line and "unexpected" not in line


def test_the_reader_reports_a_truncated_stack_as_bad_input(tmp_path: Path) -> None:
    """Data cut where the check's few windows do not look: the reader says the same."""
    from glaviz.engine.reader import StackReader
    from glaviz.engine.tiling import tile_grid
    from glaviz.errors import InputError
    from glaviz.published.normalisation import NormalisationStats
    from glaviz.published.stack_layout import StackLayout

    cut = _truncated(write_stack(tmp_path / "scene.tif", height=256, width=256), tmp_path / "c.tif")
    layout = StackLayout.read(cut)
    grid = tile_grid(256, 256, 64)
    reader = StackReader(
        cut,
        layout=layout,
        groups=("optical", "dem"),
        stats=NormalisationStats.published(),
        grid=grid,
    )
    with reader, pytest.raises(InputError, match=r"cannot read stack .*c\.tif \(rows \d+-\d+\)"):
        for _ in reader:
            pass


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` made read-only for this process (immutable for root), or the test skipped."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        made, undo = True, []
    try:
        probe = folder / "probe"
        try:
            probe.write_text("")
        except OSError:
            pass
        else:
            probe.unlink()
            made = False
        if not made:
            pytest.skip("cannot make a folder read-only here")
        yield
    finally:
        if undo:
            subprocess.run(undo, capture_output=True)
        else:
            folder.chmod(0o755)


def test_a_read_only_output_folder_is_one_line(stack: Path, tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked"
    with _read_only(locked):
        for out in (locked, locked / "new"):
            assert main(["deploy", str(stack), "--weights", "demo", "-o", str(out)]) == 1
            line = error_line(capsys)
            assert f"cannot write into {locked}" in line and "-o" in line, line
        # Past the check (a folder that became read-only after it): the engine says the same.
        with pytest.raises(GlavizError, match="read-only"), _skip_check("require_writable"):
            deploy(DeployConfig(stack=stack, weights="demo", output=locked / "new"))


@contextlib.contextmanager
def _skip_check(name: str) -> Iterator[None]:
    import glaviz.runs.writes as outputs

    saved = getattr(outputs, name)
    setattr(outputs, name, lambda *args, **kwargs: Path("/"))
    try:
        yield
    finally:
        setattr(outputs, name, saved)


def _file_size_limit(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_write_that_fails_midway_is_one_line(stack: Path, tmp_path: Path) -> None:
    """A write the disk refuses (here a file-size limit, as a full disk does): one line, none of
    libtiff's own, nothing left behind. (A checkpoint: a bundle's weights are unpacked into a
    temporary file, which the limit would refuse first.)"""
    weights = write_keras2_checkpoint(tmp_path / "model.h5", patch_size=64)
    out = tmp_path / "out"
    launcher = "import sys; from glaviz.cli.app import run; sys.argv[0] = 'glaviz'; run()"
    argv = ["deploy", str(stack), "--weights", str(weights), "-o", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", launcher, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        preexec_fn=lambda: _file_size_limit(16_000),
        stdin=subprocess.DEVNULL,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write "), done.stderr
    assert ".tif" in lines[0] and "File too large" in lines[0]
    assert not out.exists()


def test_a_model_out_of_memory_is_one_line(
    stack: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow as tf

    from glaviz.engine import inference

    def exhausted(self: object, inputs: object) -> None:
        raise tf.errors.ResourceExhaustedError(
            None, None, "OOM when allocating tensor with shape[4,64,64,256] and type float"
        )

    monkeypatch.setattr(inference.BatchedModel, "predict", exhausted)
    out = tmp_path / "out"
    args = ["deploy", str(stack), "--weights", "demo", "-o", str(out), "--batch-size", "9"]
    assert main(args) == 1
    line = error_line(capsys)
    assert "out of memory" in line and "OOM when allocating" in line and "--batch-size 4" in line
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# D15: cheap errors are cheap


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["deploy", "{tmp}/missing.tif", "--weights", "demo"], 1, "does not exist"),
        (["deploy", "{stack}", "--weights", "no-such-model"], 2, "no-such-model"),
        (["deploy", "{stack}", "--weights", "global"], 1, "glaviz fetch-weights global"),
        (
            ["deploy", "{stack}", "--weights", "demo", "--calibration", "{tmp}/no.json"],
            2,
            "no.json",
        ),
        (
            ["deploy", "{stack}", "--weights", "demo", "--region-vector", "{tmp}/rv.json"],
            1,
            "rv.json",
        ),
        (["predict", "--weights", "no-such-model", "--dataset", "{tmp}/d.h5"], 2, "no-such-model"),
        (["predict", "--weights", "demo", "--dataset", "{tmp}/d.h5"], 1, "d.h5"),
        (["optimise-bias", "{tmp}/missing.tif", "--weights", "demo"], 2, "region-encoding"),
    ],
    ids=[
        "missing-stack",
        "unknown-weights",
        "weights-not-downloaded",
        "missing-calibration",
        "missing-region-vector",
        "predict-unknown-weights",
        "predict-missing-dataset",
        "optimise-bias-not-region-model",
    ],
)
def test_cheap_errors_come_before_tensorflow(
    argv: list[str],
    code: int,
    words: str,
    stack: Path,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
    no_tensorflow,
) -> None:
    monkeypatch.setenv("GLAVIZ_HOME", str(tmp_path / "home"))  # nothing downloaded
    args = [a.format(tmp=tmp_path, stack=stack) for a in argv]
    if args[0] != "deploy":
        args += ["-o", str(tmp_path / "out.json")]
    else:
        args += ["-o", str(tmp_path / "out")]
    started = time.perf_counter()
    assert main(args) == code
    assert words in error_line(capsys)
    assert time.perf_counter() - started < 1.0


def test_a_missing_stack_is_reported_in_a_second(tmp_path: Path) -> None:
    outcome = glaviz("deploy", str(tmp_path / "missing.tif"), "--weights", "demo", timeout=30)
    assert outcome.returncode == 1, outcome.stderr
    assert len(outcome.error_lines) == 1 and "does not exist" in outcome.error_lines[0]
    assert outcome.seconds < DEPLOY_SECONDS


# ==================================================================================================
# B9: weights served or imported under a registry name that are not that model's file
# ==================================================================================================


GLOBAL_FILE = "glavitu_global_weights.h5"
GLOBAL_ID = "1HLIVlWuGfMx_jZQleHlQmuzvzHVMRTOd"
FOLDER_ID = "1PPtcBUg6Ls42bgSqpM53Ud8G2MOMV70s"
FAST = RetryPolicy(attempts=3, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=20)


@pytest.fixture(autouse=True)
def glaviz_home(isolated_home: Path) -> Path:
    return isolated_home


@pytest.fixture(scope="module")
def genuine(published_checkpoint_bytes: bytes) -> bytes:
    """Stands in for the published global model: optical + DEM, no location input."""
    return published_checkpoint_bytes


@pytest.fixture(scope="module")
def impostor(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Same architecture as ``genuine``, other (random) weights: only a digest tells them apart."""
    path = tmp_path_factory.mktemp("weights") / GLOBAL_FILE
    return write_keras2_checkpoint(path, seed=99).read_bytes()


@pytest.fixture(scope="module")
def sar_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Another architecture with the same band counts: optical(6) + co_pol_sar(2)."""
    path = tmp_path_factory.mktemp("weights") / GLOBAL_FILE
    return write_keras2_checkpoint(path, features=("optical", "co_pol_sar"), seed=5).read_bytes()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The fake server as a mirror and as the Google Drive (both empty until a test fills them)."""
    with running_server() as fake:
        fake.folders[FOLDER_ID] = []
        monkeypatch.setenv("GLAVIZ_DRIVE_URL", fake.url)
        yield fake


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_files(home: Path) -> list[str]:
    folder = home / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------------------------------
# Another architecture under the name: refused on every path into the cache


@pytest.mark.parametrize("path", ["http-mirror", "folder-mirror", "drive", "from"])
def test_another_architecture_served_as_global_is_refused_on_every_path(
    path: str,
    server: FakeServer,
    sar_model: bytes,
    tmp_path: Path,
    glaviz_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["fetch-weights", "global"]
    if path == "http-mirror":
        server.files[GLOBAL_FILE] = sar_model
        argv += ["--base-url", server.url]
    elif path == "folder-mirror":
        share = tmp_path / "share"
        share.mkdir()
        (share / GLOBAL_FILE).write_bytes(sar_model)
        argv += ["--base-url", str(share)]
    elif path == "drive":
        server.drive[GLOBAL_ID] = sar_model
    else:
        download = tmp_path / "Downloads" / GLOBAL_FILE
        download.parent.mkdir()
        download.write_bytes(sar_model)
        argv += ["--from", str(download)]

    assert main(argv) == 1
    line = error_line(capsys)
    assert "optical(6)+co_pol_sar(2), not the expected optical(6)+dem(2)" in line
    assert "refused as model 'global'" in line
    assert cache_files(glaviz_home) == []  # nothing "verified", nothing kept, not even a record


# --------------------------------------------------------------------------------------------------
# Trust on first use: the first digest decides, until the user accepts another on purpose


def test_a_random_checkpoint_replacing_the_first_download_is_refused(
    server: FakeServer,
    genuine: bytes,
    impostor: bytes,
    glaviz_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.files[GLOBAL_FILE] = genuine
    assert main(["fetch-weights", "global", "--base-url", server.url]) == 0
    err = capsys.readouterr().err
    assert f"model 'global' was installed unpinned: its sha256 {sha(genuine)}" in err
    target = glaviz_home / "weights" / GLOBAL_FILE

    # The mirror now serves other weights of the same architecture under the same name.
    server.files[GLOBAL_FILE] = impostor
    assert main(["fetch-weights", "global", "--base-url", server.url, "--force"]) == 1
    line = error_line(capsys)
    assert f"has sha256 {sha(impostor)}" in line
    assert f"recorded here with sha256 {sha(genuine)}" in line
    assert f"rerun with --force --sha256 {sha(impostor)}" in line
    assert sha(target.read_bytes()) == sha(genuine)  # the trusted file stays
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]

    # Deleting the cached file does not reset the trust: only the record does.
    target.unlink()
    with pytest.raises(WeightsError, match=f"recorded here with sha256 {sha(genuine)}"):
        fetch_model("global", base_url=server.url, policy=FAST)
    assert cache_files(glaviz_home) == [GLOBAL_FILE + ".info.json"]

    # Accepting the new file is a deliberate act: its digest, typed by the user.
    argv = ["fetch-weights", "global", "--base-url", server.url, "--force", "--sha256"]
    assert main([*argv, sha(impostor)]) == 0
    assert sha(target.read_bytes()) == sha(impostor)
    record = json.loads((glaviz_home / "weights" / (GLOBAL_FILE + ".info.json")).read_text())
    assert record["sha256"] == sha(impostor) and record["trust"] == "--sha256"


def test_an_import_is_checked_against_the_first_use_record(
    genuine: bytes, impostor: bytes, tmp_path: Path, glaviz_home: Path
) -> None:
    first, second = tmp_path / "first.h5", tmp_path / "second.h5"
    first.write_bytes(genuine)
    second.write_bytes(impostor)
    assert import_model("global", first).sha256 == sha(genuine)

    with pytest.raises(WeightsError, match="nothing was imported") as refused:
        import_model("global", second, force=True)
    assert sha(genuine) in str(refused.value) and sha(impostor) in str(refused.value)
    assert sha((glaviz_home / "weights" / GLOBAL_FILE).read_bytes()) == sha(genuine)

    accepted = import_model("global", second, force=True, sha256=sha(impostor))
    assert accepted.status == "imported" and accepted.sha256 == sha(impostor)


def test_a_cached_file_changed_after_its_install_is_refused(
    genuine: bytes, impostor: bytes, tmp_path: Path, glaviz_home: Path
) -> None:
    source = tmp_path / GLOBAL_FILE
    source.write_bytes(genuine)
    import_model("global", source)
    target = glaviz_home / "weights" / GLOBAL_FILE
    target.write_bytes(impostor)  # swapped behind glaviz's back

    with pytest.raises(WeightsError, match="changed after it was installed") as refused:
        fetch_model("global")
    assert sha(genuine) in str(refused.value) and sha(impostor) in str(refused.value)


# --------------------------------------------------------------------------------------------------
# --sha256: a pin for this one fetch or import


def test_a_download_that_is_not_the_given_sha256_is_refused_and_removed(
    server: FakeServer,
    impostor: bytes,
    genuine: bytes,
    tmp_path: Path,
    glaviz_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.files[GLOBAL_FILE] = impostor
    argv = ["fetch-weights", "global", "--base-url", server.url, "--sha256", sha(genuine)]
    assert main(argv) == 1
    line = error_line(capsys)
    assert f"has sha256 {sha(impostor)}" in line and f"--sha256 asks for {sha(genuine)}" in line
    assert "the download was deleted" in line
    assert cache_files(glaviz_home) == []  # no file, no .part, no record

    download = tmp_path / GLOBAL_FILE
    download.write_bytes(impostor)
    assert main(["fetch-weights", "global", "--from", str(download), "--sha256", sha(genuine)]) == 1
    assert "nothing was imported" in error_line(capsys)
    assert cache_files(glaviz_home) == []

    # The right digest installs it, and a pinned install is not warned about.
    server.files[GLOBAL_FILE] = genuine
    assert main([*argv[:-1], sha(genuine).upper()]) == 0  # any case, as sha256sum users paste
    assert "unpinned" not in capsys.readouterr().err
    assert resolve_weights("global").source == "cache"


# ==================================================================================================
# B7, B8, C10–C13: wrong inventories, stale records, leftovers of failed or killed runs
# ==================================================================================================


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_taking_an_output_folder_sweeps_what_killed_runs_left(tmp_path: Path) -> None:
    out = tmp_path / "scene.glaviz"
    out.mkdir()
    dead = _dead_pid()
    stale = [
        out / f".outlines.partial-{dead}.tif",
        out / f".outlines.tif.scratch-{dead}",
        out / f".outlines.tif.scratch-{dead}.aux.xml",
        out / f".run.partial-{dead}.json",
    ]
    for path in stale:
        path.write_bytes(b"x" * 100)
    (out / LOCK_NAME).write_text("")  # a lock file whose holder was killed
    alive = out / ".outlines.partial-1.tif"  # pid 1 always exists: another live writer's file
    alive.write_bytes(b"x")
    with OutputFolder(out, ("outlines.tif", "run.json"), overwrite=True) as folder:
        folder.temp("outlines.tif").write_bytes(b"new")
        folder.commit()
    assert sorted(p.name for p in folder.swept) == sorted(p.name for p in stale)
    assert sorted(p.name for p in out.iterdir()) == sorted(["outlines.tif", alive.name])


def test_an_atomic_write_sweeps_the_temporary_files_of_dead_writers(tmp_path: Path) -> None:
    target = tmp_path / "stack.tif"
    dead = _dead_pid()
    leftover = tmp_path / f".stack.tif.{dead}-k2j3h4.part"
    leftover.write_bytes(b"x" * 10)
    write_text_atomic(target, "done")
    assert not leftover.exists() and target.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]


def test_a_failed_atomic_write_removes_the_folders_it_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.txt"
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk gone")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_failed_features_leaves_no_folders(tmp_path: Path) -> None:
    files = make_scene(tmp_path / "scene", size=(64, 64), seed=1)
    broken = tmp_path / "optical.tif"
    broken.write_bytes(files.optical.read_bytes()[: files.optical.stat().st_size // 2])
    out = tmp_path / "out" / "new1" / "new2" / "f.tif"
    outcome = glaviz(
        "features", "-o", str(out), "--optical", str(broken), "--elevation", str(files.elevation)
    )
    assert outcome.returncode == 1, outcome.stderr
    assert len(outcome.error_lines) == 1 and "optical.tif" in outcome.error_lines[0]
    assert not (tmp_path / "out").exists()


def test_scene_ids_may_not_take_the_names_of_the_job_outputs(tmp_path: Path) -> None:
    stack = tmp_path / "s.tif"
    stack.write_bytes(b"")
    for reserved in ("summary.csv", "Outlines.GPKG"):
        job = tmp_path / "job.toml"
        job.write_text(
            f'output = "out"\n[deploy]\nweights = "demo"\n[[scene]]\nid = "{reserved}"\n'
            'stack = "s.tif"\n'
        )
        outcome = glaviz("batch", str(job), cwd=tmp_path)
        assert outcome.returncode == 2, outcome.stderr
        assert len(outcome.error_lines) == 1
        assert "is the name of a file glaviz batch writes" in outcome.error_lines[0]
        assert not (tmp_path / "out").exists()


def test_the_local_cluster_keeps_its_scratch_in_the_output_and_removes_it(
    tmp_path: Path, monkeypatch
) -> None:
    import tempfile

    from glaviz.batch.cluster import open_cluster

    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out"
    with open_cluster("local", workers=1, scratch=output) as cluster:
        worker_tmp = cluster.client.submit(tempfile.gettempdir, pure=False).result()
        scratch = [p.name for p in output.iterdir()]
    assert len(scratch) == 1 and scratch[0].startswith(".dask-scratch-")
    assert Path(worker_tmp).is_relative_to(output / scratch[0])
    assert list(output.iterdir()) == []
    assert not (tmp_path / "dask-scratch-space").exists()


def test_tensorflow_processes_keep_their_temp_files_in_a_folder_of_their_own(
    tmp_path: Path,
) -> None:
    code = (
        "import tempfile, sys\n"
        "from glaviz.util.leftovers import use_private_tempdir\n"
        "private = use_private_tempdir()\n"
        "open(tempfile.mkstemp(prefix='__autograph_generated_file', suffix='.py')[1], 'w')\n"
        "print(private)\n"
    )
    dead = _dead_pid()
    stale = tmp_path / f"glaviz-{dead}-abcd"
    stale.mkdir()
    (stale / "__autograph_generated_file1.py").write_text("x")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"TMPDIR": str(tmp_path)}
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent == tmp_path
    assert list(tmp_path.iterdir()) == []  # its own folder went at exit, the stale one before


def test_inventory_takes_the_elevation_band_of_a_stack_and_refuses_other_multiband_dems(
    tmp_path: Path,
) -> None:
    import geopandas as gpd
    import numpy as np
    import rasterio

    from tests.helpers import write_stack

    stack = write_stack(tmp_path / "stack.tif", height=70, width=90)
    with rasterio.open(stack) as src:
        profile = src.profile
        ice = src.read(1) > 0.5
        elevation = src.read(src.descriptions.index("elevation") + 1)
    profile.update(count=1, dtype="uint8", nodata=255)
    outlines = tmp_path / "outlines.tif"
    with rasterio.open(outlines, "w", **profile) as dst:
        dst.write(ice.astype(np.uint8), 1)
    out = tmp_path / "glaciers.gpkg"
    done = glaviz("inventory", str(outlines), "--dem", str(stack), "-o", str(out))
    assert done.returncode == 0, done.stderr
    glaciers = gpd.read_file(out, layer="glaciers")
    assert len(glaciers) and glaciers.zmin_m.min() >= float(np.nanmin(elevation)) - 1
    anonymous = tmp_path / "three.tif"
    profile.update(count=3, dtype="float32", nodata=None)
    with rasterio.open(anonymous, "w", **profile) as dst:
        dst.write(np.ones((3, 70, 90), np.float32))
    refused = glaviz(
        "inventory", str(outlines), "--dem", str(anonymous), "-o", str(tmp_path / "g2.gpkg")
    )
    assert refused.returncode == 1 and len(refused.error_lines) == 1
    assert "has 3 bands and none is described as 'elevation'" in refused.error_lines[0]


def test_a_cached_weights_file_swapped_for_one_of_the_same_size_is_hashed_again(
    tmp_path: Path,
) -> None:
    import hashlib
    import json
    import os

    from glaviz.registry.cache import info_path
    from glaviz.runs.records import weights_sha256

    weights = tmp_path / "glavitu_global_weights.h5"
    weights.write_bytes(b"a" * 64)
    info = info_path(weights)
    info.write_text(json.dumps({"size": 64, "sha256": hashlib.sha256(b"a" * 64).hexdigest()}))
    assert weights_sha256(weights) == hashlib.sha256(b"a" * 64).hexdigest()
    weights.write_bytes(b"b" * 64)  # replaced by hand after the record was written
    later = info.stat().st_mtime_ns + 1_000_000_000
    os.utime(weights, ns=(later, later))
    assert weights_sha256(weights) == hashlib.sha256(b"b" * 64).hexdigest()


def test_skip_existing_recomputes_a_run_whose_outputs_were_removed_or_cut(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import json

    from glaviz.cli.app import main
    from tests.helpers import tiny_bundle, write_stack

    monkeypatch.chdir(tmp_path)
    write_stack(tmp_path / "stack.tif")
    tiny_bundle(tmp_path / "tiny.glaviz")
    args = ["deploy", "stack.tif", "--weights", "tiny.glaviz", "-o", "out", "--no-quicklook"]
    assert main(args) == 0
    recorded = json.loads((tmp_path / "out" / "run.json").read_text())["outputs"]
    assert set(recorded) == {"outlines.tif", "confidence.tif", "outlines.gpkg"}
    for name, meta in recorded.items():
        assert (tmp_path / "out" / name).stat().st_size == meta["size"]
    capsys.readouterr()
    (tmp_path / "out" / "confidence.tif").unlink()
    outlines = tmp_path / "out" / "outlines.tif"
    outlines.write_bytes(outlines.read_bytes()[:100])
    assert main([*args, "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert "skipped" not in captured.out + captured.err
    assert "incomplete" in captured.err and "computing it again" in captured.err
    for name, meta in recorded.items():
        assert (tmp_path / "out" / name).stat().st_size == meta["size"]
    assert main([*args, "--skip-existing"]) == 0
    assert "skipped: " in capsys.readouterr().out


def test_skip_existing_recomputes_a_cut_single_file_output(tmp_path: Path, capsys) -> None:
    from glaviz.cli.app import main

    files = make_scene(tmp_path / "scene", size=(64, 64), seed=2)
    stack = tmp_path / "stack.tif"
    args = ["features", "-o", str(stack), "--optical", str(files.optical)]
    args += ["--elevation", str(files.elevation), "--skip-existing"]
    assert main(args) == 0
    size = stack.stat().st_size
    stack.write_bytes(stack.read_bytes()[:500])
    capsys.readouterr()
    assert main(args) == 0
    assert "skipped" not in capsys.readouterr().out
    assert stack.stat().st_size == size


def test_a_stopped_batch_sweeps_its_scene_folders(tmp_path: Path) -> None:
    from filelock import FileLock

    from glaviz.runs.outputs import sweep_folder

    scene = tmp_path / "out" / "scene-1"
    scene.mkdir(parents=True)
    dead = _dead_pid()
    stale = [
        scene / f".outlines.tif.scratch-{dead}",
        scene / f".confidence.partial-{dead}.tif",
        scene / f".stack.tif.{dead}-x1y2z3.part",
    ]
    for path in stale:
        path.write_bytes(b"x")
    (scene / LOCK_NAME).write_text("")  # left by a killed worker: nobody holds it
    kept = scene / "outlines.tif"
    kept.write_bytes(b"done")
    removed = sweep_folder(scene)
    assert sorted(p.name for p in removed) == sorted([*(p.name for p in stale), LOCK_NAME])
    assert [p.name for p in scene.iterdir()] == ["outlines.tif"]
    held = FileLock(scene / LOCK_NAME)
    with held:  # a live run's lock stays
        assert sweep_folder(scene) == [] and (scene / LOCK_NAME).exists()


def test_single_file_outputs_in_a_read_only_folder_are_one_line(tmp_path: Path) -> None:
    files = make_scene(tmp_path / "scene", size=(64, 64), seed=3)
    locked = tmp_path / "locked"
    inputs = ["--optical", str(files.optical), "--elevation", str(files.elevation)]
    with _read_only(locked):
        for output in (locked / "stack.tif", locked / "new" / "stack.tif"):
            outcome = glaviz("features", "-o", str(output), *inputs)
            assert outcome.returncode == 1, outcome.stderr
            assert len(outcome.error_lines) == 1, outcome.stderr
            line = outcome.error_lines[0]
            assert "cannot write" in line and "read-only" in line and "unexpected" not in line
