"""Hostile inputs to deploy and calibrate: sizes, radiometry, georeferencing, broken files and
full or read-only disks (the fault tour, parts A2, A3, B5, B6, D14 and D15).

Every refusal must be one ``Error:`` line that names the file, the cause and the fix, with the
exit status of its kind (1 for data, 2 for options), and everything that can be checked without
TensorFlow must be refused before TensorFlow is imported. In this process that is shown by
making TensorFlow's import fail (:func:`no_tensorflow`): a refusal that came after it would be
an "unexpected AssertionError". Children run capped (:mod:`tests.capped`) at an address space
that TensorFlow cannot start in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from glaviz.cli.app import main
from glaviz.config import DeployConfig
from glaviz.engine.deploy import deploy
from glaviz.errors import GlavizError
from glaviz.published.groups import GROUP_STACK_BANDS
from tests.capped import glaviz
from tests.helpers import error_line, write_keras2_checkpoint, write_stack

#: Wall time a refusal before TensorFlow may take in a child on a loaded 2-core machine (it takes
#: about 0.4 s alone; starting TensorFlow takes 3-7 s).
SECONDS = 3.0


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
    assert outcome.seconds < SECONDS  # no TensorFlow (it cannot start under this cap either)
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
    assert outcome.seconds < SECONDS
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
    assert outcome.seconds < SECONDS
