"""glaviz calibrate: the published kernel-ridge procedure, isotonic tables, ECE, the JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glaviz.calibration import CalibrationModel, IsotonicCalibration, KernelRidgeCalibration
from glaviz.calibration.fit import calibrate, collect_reliability, predictions_ece
from glaviz.calibration.reliability import Reliability
from glaviz.cli.app import main
from glaviz.config import CalibrateConfig
from glaviz.errors import ConfigError
from glaviz.evaluation import predictions as predictions_module
from tests.helpers import error_line

# ----------------------------------------------------------------------------- helpers


def overconfident_predictions(
    path: Path, *, seed: int, tiles: int = 6, size: int = 48, sharpen: float = 3.0
) -> Path:
    """A predictions file whose stated probabilities are more extreme than the truth's odds.

    Each pixel has a true glacier probability q; the truth is drawn with probability q, and the
    model states ``q^k / (q^k + (1 − q)^k)`` (k > 1): confident beyond what it gets right.
    """
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as file:
        for index in range(tiles):
            q = rng.beta(0.7, 0.7, size=(size, size))
            true = (rng.random((size, size)) < q).astype(np.uint8)
            stated = q**sharpen / (q**sharpen + (1 - q) ** sharpen)
            prob = np.stack([1 - stated, stated], axis=-1).astype(np.float32)
            group = file.create_group(f"ALP-{seed}-{index}")
            group.create_dataset("prob", data=prob)
            group.create_dataset("pred", data=(stated > 0.5).astype(np.uint8))
            group.create_dataset("true", data=true)
            group.attrs["region"] = "ALP"
            group.attrs["subregion"] = "ALP1"
            group.attrs["tile_name"] = f"ALP-{seed}-{index}"
    return path


def all_pixels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's (probability of glacier in float64, truth) — fine for tiny test files."""
    probs, truths = [], []
    with h5py.File(path, "r") as file:
        for name in file:
            prob = np.asarray(file[name]["prob"], dtype=np.float64)
            probs.append(prob.reshape(-1, 2))
            truths.append(np.asarray(file[name]["true"]).ravel())
    return np.concatenate(probs), np.concatenate(truths)


def independent_points(path: Path, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The published fit points, computed from scratch with numpy's histogram."""
    prob, true = all_pixels(path)
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    conf = 1 + np.sum(p * np.log2(p), axis=-1)
    correct = ((prob[:, 1] > 0.5) == (true == 1)).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    count, _ = np.histogram(conf, edges)
    conf_sum, _ = np.histogram(conf, edges, weights=conf)
    right, _ = np.histogram(conf, edges, weights=correct)
    keep = count > 0
    x = np.r_[0.0, conf_sum[keep] / count[keep], 1.0]
    y = np.r_[0.0, right[keep] / count[keep], 1.0]
    w = np.r_[1.0, (count[keep] / count.max()) ** 0.1, 1.0]
    return x, y, w


def sklearn_kernel_ridge(path: Path, bins: int = 100):
    from sklearn.kernel_ridge import KernelRidge

    x, y, w = independent_points(path, bins)
    return KernelRidge(alpha=(1 - w) * 1e-2, kernel="laplacian").fit(x[:, None], y)


def independent_ece(conf: np.ndarray, correct: np.ndarray, bins: int = 100) -> float:
    edges = np.linspace(0, 1, bins + 1)
    count, _ = np.histogram(conf, edges)
    conf_sum, _ = np.histogram(conf, edges, weights=conf)
    right, _ = np.histogram(conf, edges, weights=correct.astype(np.float64))
    keep = count > 0
    gap = np.abs(right[keep] / count[keep] - conf_sum[keep] / count[keep])
    return float(np.sum(count[keep] * gap) / count.sum())


GRID = np.linspace(0, 1, 1001)


@pytest.fixture(scope="module")
def validation(tmp_path_factory) -> Path:
    return overconfident_predictions(tmp_path_factory.mktemp("val") / "val.h5", seed=1)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    return overconfident_predictions(tmp_path_factory.mktemp("test") / "test.h5", seed=2)


# ----------------------------------------------------------------------------- reliability


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=2, max_value=200),
    st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=300),
)
def test_bins_match_numpy_histogram(bins: int, values: list[float]) -> None:
    conf = np.array([*values, 0.0, 1.0, 0.5])
    correct = (np.arange(conf.size) % 3 == 0).astype(np.float64)
    diagram = Reliability(bins)
    diagram.update(conf[:5], correct[:5])
    diagram.update(conf[5:], correct[5:])  # streaming in pieces changes nothing
    edges = np.linspace(0, 1, bins + 1)
    assert diagram.count.tolist() == np.histogram(conf, edges)[0].tolist()
    assert diagram.correct.tolist() == np.histogram(conf, edges, weights=correct)[0].tolist()
    assert diagram.ece() == pytest.approx(independent_ece(conf, correct, bins), abs=1e-12)


def test_streamed_diagram_equals_all_pixels(validation: Path, monkeypatch) -> None:
    monkeypatch.setattr(predictions_module, "BLOCK_PIXELS", 100)  # several blocks per tile
    diagram = collect_reliability(validation, bins=(100,))[100]
    prob, true = all_pixels(validation)
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    conf = 1 + np.sum(p * np.log2(p), axis=-1)
    correct = (prob[:, 1] > 0.5) == (true == 1)
    assert diagram.total == true.size
    assert diagram.ece() == pytest.approx(independent_ece(conf, correct), abs=1e-12)


# ----------------------------------------------------------------------------- fits


def test_kernel_ridge_equals_independent_sklearn_fit(validation: Path, tmp_path: Path) -> None:
    result = calibrate(CalibrateConfig(predictions=validation, output=tmp_path / "cal.json"))
    assert isinstance(result.model, KernelRidgeCalibration)
    reference = sklearn_kernel_ridge(validation)
    curve = result.model.predict(GRID)
    assert np.max(np.abs(curve - reference.predict(GRID[:, None]))) < 1e-3
    assert np.max(np.abs(curve - reference.predict(GRID[:, None]))) < 1e-9  # in fact equal
    np.testing.assert_allclose(result.model.x_fit, reference.X_fit_[:, 0], atol=1e-12)
    assert result.model.gamma == 1.0 and result.model.kernel == "laplacian"


def test_published_call_interpolates_its_points(validation: Path, tmp_path: Path) -> None:
    """scikit-learn reads the per-point alpha as one per target, so only alpha[0] = 0 counts.

    This pins the behaviour that makes the published files pass through their anchors; if a
    scikit-learn release changes it, glaviz calibrations would no longer match published ones.
    """
    model = calibrate(CalibrateConfig(predictions=validation, output=tmp_path / "cal.json")).model
    x, y, _ = independent_points(validation, 100)
    np.testing.assert_allclose(model.predict(x), y, atol=1e-8)


def test_isotonic_equals_sklearn(validation: Path, tmp_path: Path) -> None:
    from sklearn.isotonic import IsotonicRegression

    result = calibrate(
        CalibrateConfig(predictions=validation, output=tmp_path / "cal.json", method="isotonic")
    )
    assert isinstance(result.model, IsotonicCalibration)
    diagram = result.before
    keep = diagram.nonempty
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
        diagram.mean_confidence[keep], diagram.accuracy[keep], sample_weight=diagram.count[keep]
    )
    np.testing.assert_allclose(result.model.apply(GRID), reference.predict(GRID), atol=1e-12)
    assert np.all(np.diff(result.model.apply(GRID)) >= 0)


@pytest.mark.parametrize("method", ["kernel-ridge", "isotonic"])
def test_calibration_lowers_ece_on_held_out_pixels(
    validation: Path, held_out: Path, tmp_path: Path, method: str
) -> None:
    result = calibrate(
        CalibrateConfig(predictions=validation, output=tmp_path / "cal.json", method=method)
    )
    before = predictions_ece(held_out)
    after = predictions_ece(held_out, calibration=result.model)
    assert before > 0.05  # the generator is clearly overconfident
    assert after < 0.5 * before
    assert result.ece_after < result.ece_before


def test_reported_ece_after_is_that_of_calibrated_pixels(validation: Path, tmp_path: Path) -> None:
    result = calibrate(
        CalibrateConfig(predictions=validation, output=tmp_path / "cal.json", bins=40)
    )
    prob, true = all_pixels(validation)
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    conf = 1 + np.sum(p * np.log2(p), axis=-1)
    correct = (prob[:, 1] > 0.5) == (true == 1)
    assert result.ece_before == pytest.approx(independent_ece(conf, correct), abs=1e-12)
    calibrated = result.model.apply(conf)
    assert result.ece_after == pytest.approx(independent_ece(calibrated, correct), abs=1e-12)
    assert result.before.bins == result.after.bins == 40


# ----------------------------------------------------------------------------- the file


@pytest.mark.parametrize("method", ["kernel-ridge", "isotonic"])
def test_written_json_loads_for_deploy(validation: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / "out" / "cal.json"
    result = calibrate(CalibrateConfig(predictions=validation, output=out, method=method))
    raw = out.read_bytes()
    data = json.loads(raw.decode("utf-8"))  # plain JSON text, not a pickle
    assert "check" in data and data["ece_before"] == result.ece_before
    from glaviz.registry.catalogue import calibration_path

    # What deploy --calibration CAL.json does: resolve the path, load (checks the table), apply.
    loaded = CalibrationModel.load(calibration_path(str(out)))
    assert type(loaded) is type(result.model)
    conf = np.random.default_rng(0).random(1000)
    np.testing.assert_allclose(loaded.apply(conf), result.model.apply(conf), atol=1e-12)
    assert loaded.apply(conf).min() >= 0 and loaded.apply(conf).max() <= 1
    assert [p.name for p in out.parent.iterdir()] == ["cal.json"]  # no temporary left behind


def test_cli_prints_ece_and_draws_the_plot(validation: Path, tmp_path: Path, capsys) -> None:
    out, png = tmp_path / "cal.json", tmp_path / "reliability.png"
    assert main(["calibrate", str(validation), "-o", str(out), "--plot", str(png)]) == 0
    stdout = capsys.readouterr().out
    assert "ECE (100 bins)" in stdout and "before" in stdout and "after" in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(CalibrationModel.load(out), KernelRidgeCalibration)


# ----------------------------------------------------------------------------- errors


def test_errors(validation: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cal.json"

    assert main(["calibrate", str(tmp_path / "none.h5"), "-o", str(out)]) == 1
    assert "does not exist" in error_line(capsys)

    text = tmp_path / "text.h5"
    text.write_text("{}")
    assert main(["calibrate", str(text), "-o", str(out)]) == 1
    assert "not an HDF5 file" in error_line(capsys)

    no_truth = tmp_path / "no_truth.h5"
    with h5py.File(no_truth, "w") as file:
        file.create_group("T").create_dataset("prob", data=np.full((4, 4, 2), 0.5, np.float32))
    assert main(["calibrate", str(no_truth), "-o", str(out)]) == 1
    assert "needs the truth" in error_line(capsys)

    unlabelled = tmp_path / "all_nodata.h5"
    with h5py.File(unlabelled, "w") as file:
        group = file.create_group("T")
        group.create_dataset("prob", data=np.full((4, 4, 2), 0.5, np.float32))
        group.create_dataset("true", data=np.full((4, 4), 255, np.uint8))
    assert main(["calibrate", str(unlabelled), "-o", str(out)]) == 1
    assert "empty" in error_line(capsys)
    assert not out.exists()

    assert main(["calibrate", str(validation), "-o", str(out), "--bins", "1"]) == 2
    assert error_line(capsys).startswith("Error: bins: ")

    assert main(["calibrate", str(validation), "-o", str(out), "--method", "platt"]) == 2
    line = error_line(capsys)
    assert line.startswith("Error: method: ") and "'kernel-ridge' or 'isotonic'" in line

    out.write_text("{}")
    assert main(["calibrate", str(validation), "-o", str(out)]) == 3
    assert "--overwrite" in error_line(capsys)
    assert main(["-q", "calibrate", str(validation), "-o", str(out), "--overwrite"]) == 0
    assert capsys.readouterr().out == ""
    assert isinstance(CalibrationModel.load(out), KernelRidgeCalibration)


def test_bins_below_two_are_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Reliability(1)
