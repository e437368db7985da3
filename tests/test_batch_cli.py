"""Batch-job behaviour of the CLI: default output folder, skip-existing without TensorFlow,
re-runs from run records, exit codes, --json, global options after the command, signals,
and ``glaviz.open_result``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from glaviz.cli.app import main
from tests.helpers import error_line, tiny_bundle, write_raster, write_stack

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A folder with stack.tif, tiny.glaviz, and a finished default deploy (stack.glaviz/)."""
    folder = tmp_path_factory.mktemp("scene")
    write_stack(folder / "stack.tif")
    tiny_bundle(folder / "tiny.glaviz")
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        assert main(["deploy", "stack.tif", "--weights", "tiny.glaviz"]) == 0
    finally:
        os.chdir(cwd)
    return folder


def _glaviz(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = "import sys; from glaviz.cli.app import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, **kw
    )


def test_default_output_folder_and_record(scene: Path) -> None:
    out = scene / "stack.glaviz"
    names = {p.name for p in out.iterdir()}
    expected = {"confidence.tif", "outlines.gpkg", "outlines.tif", "run.json"}
    assert expected <= names and names - expected <= {"quicklook.png"}
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["stack"] == str(scene / "stack.tif")
    assert record["config"]["weights"] == str(scene / "tiny.glaviz")
    assert "overwrite" not in record["config"] and record["fingerprint"]["weights_sha256"]


def test_skip_existing_is_fast_and_imports_no_tensorflow(scene: Path) -> None:
    probe = (
        "import sys, time; t = time.perf_counter(); from glaviz.cli.app import main\n"
        "rc = main(['deploy', 'stack.tif', '--weights', 'tiny.glaviz', '--skip-existing'])\n"
        "print('RESULT', rc, 'tensorflow' in sys.modules, round(time.perf_counter() - t, 2))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=scene, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    assert "RESULT 0 False" in done.stdout, done.stderr
    assert "skipped: " in done.stdout and "stack.glaviz" in done.stdout
    assert wall < 3.0, f"skip took {wall:.2f} s"


def test_changed_options_are_named_and_exit_3(scene: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(scene)
    args = ["deploy", "stack.tif", "--weights", "tiny.glaviz"]
    assert main([*args, "--smoothing", "3", "--skip-existing"]) == 3
    line = error_line(capsys)
    assert "smoothing: 0 → 3" in line and "--overwrite" in line
    assert main(args) == 3
    assert "--skip-existing" in error_line(capsys)
    # A touched input is a difference too.
    os.utime(scene / "tiny.glaviz")  # weights are compared by content: still the same
    assert main([*args, "--skip-existing", "-q"]) == 0


def test_rerun_from_run_record_is_byte_identical(scene: Path, tmp_path: Path, capsys) -> None:
    again = tmp_path / "again"
    record = scene / "stack.glaviz" / "run.json"
    assert main(["deploy", "--config", str(record), "-o", str(again)]) == 0
    assert (scene / "stack.glaviz/outlines.tif").read_bytes() == (
        again / "outlines.tif"
    ).read_bytes()
    # An identical re-run from the record, into the same folder, is skipped.
    argv = ["deploy", "--config", str(again / "run.json"), "--skip-existing"]
    assert main(argv) == 0
    assert "skipped" in capsys.readouterr().out


def test_quiet_before_and_after_the_command(scene: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(scene)
    args = ["deploy", "stack.tif", "--weights", "tiny.glaviz", "--skip-existing"]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("skipped: ")
    assert main(["-q", *args]) == 0
    assert capsys.readouterr() == ("", "")
    assert main([*args, "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_json_success_and_failure(scene: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(scene)
    out = tmp_path / "deep" / ("a-long-folder-name-" * 4) / "out"
    args = ["deploy", "stack.tif", "--weights", "tiny.glaviz", "-o", str(out), "--probabilities"]
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    done = json.loads(captured.out)
    assert done["status"] == "done" and done["exit_code"] == 0 and done["command"] == "deploy"
    assert str(out / "outlines.tif") in done["outputs"] and done["counts"]["windows"] > 0
    assert "windows" in captured.err  # the human summary went to stderr
    assert main(["--json", *args, "--skip-existing"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "skipped"
    for argv, code in (
        ([*args, "--json"], 3),
        (["deploy", "missing.tif", "--weights", "tiny.glaviz", "--json"], 1),
        (["deploy", "stack.tif", "--json"], 2),
        (["deploy", "--no-such-option", "--json"], 2),
    ):
        assert main(argv) == code
        captured = capsys.readouterr()
        failed = json.loads(captured.out)
        assert failed["status"] == "error" and failed["exit_code"] == code, argv
        assert failed["error"]["message"]
        assert "Error" in captured.err


def test_summary_is_one_line_when_piped(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / ("a-very-long-output-folder-name-" * 4)
    done = _glaviz("deploy", "stack.tif", "--weights", "tiny.glaviz", "-o", str(out), cwd=scene)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and "windows" in lines[0] and lines[0].endswith(f"{out}/")


def test_open_result(scene: Path, tmp_path: Path) -> None:
    import glaviz

    out = tmp_path / "prob"
    assert main(["deploy", str(scene / "stack.tif"), "--weights", str(scene / "tiny.glaviz"),
                 "-o", str(out), "--probabilities", "-q"]) == 0  # fmt: skip
    ds = glaviz.open_result(out)
    assert set(ds.data_vars) == {"outlines", "confidence", "probabilities"}
    with rasterio.open(out / "outlines.tif") as src:
        assert ds.rio.crs == src.crs
        assert ds.rio.transform() == src.transform
        assert np.array_equal(ds.outlines.values, src.read(1))
    with rasterio.open(out / "probabilities.tif") as src:
        assert ds.probabilities.sizes["class"] == src.count
        assert ds.probabilities.rio.transform() == src.transform
    assert ds.attrs["config"]["probabilities"] is True and ds.attrs["command"] == "deploy"
    assert set(glaviz.open_result(scene / "stack.glaviz").data_vars) == {"outlines", "confidence"}
    with pytest.raises(glaviz.errors.InputError, match=r"no outlines\.tif"):
        glaviz.open_result(tmp_path)


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory) -> Path:
    """A scene that takes seconds to deploy with --tta: a folder with big.tif and tiny.glaviz."""
    folder = tmp_path_factory.mktemp("big")
    write_stack(folder / "big.tif", height=600, width=600)
    tiny_bundle(folder / "tiny.glaviz")
    return folder


def _start_deploy(
    folder: Path, out: Path, *extra: str, tmpdir: Path | None = None
) -> subprocess.Popen:
    """A deploy in a child process, returned once it has started writing into ``out``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    # run(), the console script's entry point: it is what a user's shell starts.
    code = "import sys; from glaviz.cli.app import run; sys.argv[0] = 'glaviz'; run()"
    argv = ["deploy", "big.tif", "--weights", "tiny.glaviz", "-o", str(out), "--tta", *extra]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    before = set(out.iterdir()) if out.is_dir() else set()
    deadline = time.monotonic() + 120
    # The first file it makes (a lock, a temporary output) says it is past start-up.
    while not (out.is_dir() and set(out.iterdir()) - before):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "deploy never started writing"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_signal_mid_run_leaves_nothing(
    big_scene: Path, tmp_path: Path, sig: int, code: int
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = _start_deploy(big_scene, out, "--overwrite", tmpdir=temp)
    time.sleep(1.0)  # well inside the run
    assert proc.poll() is None, "deploy finished before it could be interrupted; use a bigger stack"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert list(temp.iterdir()) == []  # the private temp folder went too
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: stopped by ") and "Traceback" not in err


def test_a_signal_that_a_library_swallows_still_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """TensorFlow's dtype code turns any exception, the signal's included, into a TypeError; the
    run must still end as stopped by the signal, not as an unexpected TypeError."""
    from glaviz.util.progress import Progress

    def advance(self: Progress, *args: object, **kwargs: object) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here
        except BaseException:
            raise TypeError("Cannot find maximum value of <dtype: 'int32'>.") from None

    monkeypatch.setattr(Progress, "advance", advance)
    write_stack(tmp_path / "small.tif", height=64, width=64)
    tiny_bundle(tmp_path / "tiny.glaviz")
    out = tmp_path / "out"
    args = ["deploy", str(tmp_path / "small.tif"), "--weights", str(tmp_path / "tiny.glaviz")]
    assert main([*args, "-o", str(out)]) == 143
    assert error_line(capsys).startswith("Error: stopped by SIGTERM")
    assert not out.exists()


# ------------------------------------------------------------------ single-file outputs: records


def _rasters(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    band = (rng.random((20, 30)) > 0.5).astype(np.uint8)
    transform = from_origin(400000, 5100000, 10, 10)
    pred = write_raster(tmp_path / "pred.tif", band, "EPSG:32633", transform)
    truth = write_raster(tmp_path / "truth.tif", band[::-1].copy(), "EPSG:32633", transform)
    return pred, truth


def test_evaluate_json_file_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    pred, truth = _rasters(tmp_path)
    scores = tmp_path / "scores.json"
    args = ["evaluate", "--prediction", str(pred), "--truth", str(truth), "--scores", str(scores)]
    assert main(args) == 0
    first = scores.read_text()
    assert json.loads(first)["total"]["tp"] > 0
    assert (tmp_path / "scores.json.run.json").is_file()
    capsys.readouterr()
    scores.write_text("edited")
    assert main(args) == 3
    assert "--overwrite" in error_line(capsys) and scores.read_text() == "edited"
    assert main([*args, "--overwrite", "-q"]) == 0 and scores.read_text() == first
    assert main([*args, "--skip-existing"]) == 0
    assert capsys.readouterr().out.startswith("skipped: ")
    # --json is the global option: one JSON object with the scores in it.
    assert main(["--json", *args, "--skip-existing"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "skipped"
    (tmp_path / "scores.json.run.json").unlink()
    assert main([*args, "--skip-existing"]) == 3
    assert "no run record" in error_line(capsys)


def test_features_skip_existing_notices_changed_inputs(tmp_path: Path, capsys) -> None:
    transform = from_origin(500000, 5200000, 10, 10)
    rng = np.random.default_rng(0)
    optical = write_raster(
        tmp_path / "optical.tif",
        rng.random((6, 16, 16)).astype(np.float32),
        "EPSG:32632",
        transform,
    )
    dem = write_raster(
        tmp_path / "dem.tif", (3000 + rng.random((16, 16)) * 50).astype(np.float32), "EPSG:32632",
        transform,
    )  # fmt: skip
    stack = tmp_path / "stack.tif"
    args = ["features", "-o", str(stack), "--optical", str(optical), "--elevation", str(dem)]
    assert main([*args, "-q"]) == 0
    assert main([*args, "--skip-existing"]) == 0
    assert "skipped" in capsys.readouterr().out
    os.utime(dem, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert main([*args, "--skip-existing"]) == 3
    assert "input elevation changed" in error_line(capsys)
    assert main([*args, "--skip-existing", "--overwrite", "-q"]) == 0
    assert main([*args, "--skip-existing"]) == 0


# ------------------------------------------------- engine-side guarantees (issue 11, item 5)
# The output-folder lock and the removal of a folder a failed deploy created live in the deploy
# engine's output set; these tests state the CLI contract.


@pytest.mark.parametrize("weights", ["missing.h5", "truncated.glaviz"])
def test_failed_deploy_leaves_no_folder(scene: Path, tmp_path: Path, weights: str) -> None:
    (tmp_path / "truncated.glaviz").write_bytes((scene / "tiny.glaviz").read_bytes()[:200])
    out = tmp_path / "out"
    argv = ["deploy", str(scene / "stack.tif"), "--weights", str(tmp_path / weights)]
    assert main([*argv, "-o", str(out)]) in (1, 2)
    assert not out.exists()


# about 30 s (two TensorFlow start-ups), but the lock is part of the contract: in the default suite
def test_second_deploy_into_a_locked_folder_fails_at_once(big_scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _start_deploy(big_scene, out)
    try:
        argv = ["deploy", "big.tif", "--weights", "tiny.glaviz", "-o", str(out), "--overwrite"]
        second = _glaviz(*argv, cwd=big_scene, timeout=25)
        assert first.poll() is None, "the first deploy ended before the second was refused"
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: ")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
