"""Hostile input files: published feature pickles and model bundles built to exhaust the machine.

Each attack is a tiny file made here (seeded where it holds data). The real reader runs in a
child process capped at 2 GiB of address space and 20 s (:mod:`tests.capped`): a regression then
fails a test instead of taking the machine down. Every attack must end with exit status 1, exactly
one ``Error:`` line that names the cause, within a few seconds, and with the child's peak resident
memory near that of an idle glaviz.

The pickles go through the real command, ``glaviz features --from-published``. The bundles go
through :func:`glaviz.model.bundle.load_bundle`, the reader behind every command that loads one,
and the zip bomb also through ``glaviz deploy``; the reader's child reports whether TensorFlow was
imported, which shows that the refusal came before any model was built.
"""

from __future__ import annotations

import codecs
import json
import pickle
import re
import struct
import sys
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from tests.capped import Outcome, run_capped

#: The cap of every child: Python, numpy and rasterio start well inside it.
MEMORY = 2 << 30
#: Kill a child that is still running after this long (the old readers ran for minutes).
TIMEOUT = 20.0
#: Wall time an attack may take on a loaded 2-core machine (it takes well under a second alone).
SECONDS = 5.0
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
    assert outcome.seconds < SECONDS, f"{name}: took {outcome.seconds:.1f} s"
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
    "width": 16,
    "embedding": 32,
    "blocks": 2,
    "heads": 2,
    "mlp": 64,
    "decoder_filters": 16,
    "unet_steps": 2,
    "unet_filters": 16,
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
