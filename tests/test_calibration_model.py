"""Calibration models from JSON: the published kernel-ridge files and glaviz's isotonic tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glaviz.calibration import CalibrationModel, IsotonicCalibration, KernelRidgeCalibration
from glaviz.errors import InputError

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
#: The published calibration files; glaviz ships byte-identical copies, so no ../shared is needed.
PACKAGED = Path(__file__).resolve().parents[1] / "glaviz" / "data" / "calibration"
CALIBRATION_FILES = sorted(PACKAGED.glob("*.json")) or sorted(
    (REFERENCE / "calibration").glob("*.json")
)

# ----------------------------------------------------------------------------- helpers


def sklearn_model(data: dict):
    """A scikit-learn KernelRidge holding the file's fit, as the published pickle did."""
    kernel_ridge = pytest.importorskip("sklearn.kernel_ridge")
    model = kernel_ridge.KernelRidge(kernel=data["kernel"], gamma=data["gamma"])
    model.X_fit_ = np.asarray(data["x_fit"], dtype=np.float64)[:, np.newaxis]
    model.dual_coef_ = np.asarray(data["dual_coef"], dtype=np.float64)
    model.n_features_in_ = 1
    return model


def random_confidences(seed: int = 0) -> np.ndarray:
    """Random confidences with both ends of [0, 1] and a clump near 1, where maps are certain."""
    rng = np.random.default_rng(seed)
    return np.concatenate([[0.0, 1.0], rng.random(5000), 1 - rng.random(3000) ** 4 * 1e-2])


def write(tmp_path: Path, content: str | bytes, name: str = "cal.json") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def isotonic_table() -> IsotonicCalibration:
    return IsotonicCalibration(x=np.array([0.1, 0.5, 0.9]), y=np.array([0.0, 0.6, 0.95]))


# ----------------------------------------------------------------------------- published files

published = pytest.mark.parametrize(
    "path",
    CALIBRATION_FILES
    or [pytest.param(None, marks=pytest.mark.skip(reason=f"no reference data at {REFERENCE}"))],
    ids=lambda path: path.stem if path else "missing",
)


@published
def test_published_file_matches_its_check_table(path: Path) -> None:
    data = json.loads(path.read_text())
    model = CalibrationModel.load(path)
    assert isinstance(model, KernelRidgeCalibration)
    check = data["check"]
    np.testing.assert_allclose(
        model.predict(np.array(check["c"])), check["calibrated_unclipped"], atol=1e-9
    )


@published
def test_published_file_matches_scikit_learn(path: Path) -> None:
    data = json.loads(path.read_text())
    conf = random_confidences()
    expected = sklearn_model(data).predict(conf[:, np.newaxis])
    model = CalibrationModel.load(path)
    np.testing.assert_allclose(model.predict(conf), expected, atol=1e-6, rtol=0)
    # apply = the published deploy: predict, then values < 0 → 0 and > 1 → 1
    np.testing.assert_allclose(model.apply(conf), np.clip(expected, 0, 1), atol=1e-6, rtol=0)
    # a scene row block keeps its shape and equals the flat evaluation
    block = conf[: 3 * 2048].reshape(3, 2048).astype(np.float32)
    np.testing.assert_array_equal(model.predict(block).ravel(), model.predict(block.ravel()))


@published
def test_apply_clips_to_the_unit_interval(path: Path) -> None:
    model = CalibrationModel.load(path)
    values = model.apply(np.linspace(-0.5, 1.5, 2001))
    assert values.dtype == np.float64
    assert values.min() >= 0.0 and values.max() <= 1.0


@published
def test_published_file_round_trips(path: Path, tmp_path: Path) -> None:
    model = CalibrationModel.load(path)
    again = CalibrationModel.from_json(model.to_json())
    conf = random_confidences(1)
    np.testing.assert_array_equal(again.predict(conf), model.predict(conf))
    assert json.loads(model.to_json())["method"] == "kernel_ridge"


@settings(deadline=None, derandomize=True, max_examples=100)
@given(
    x_fit=st.lists(st.floats(0, 1), min_size=1, max_size=40),
    gamma=st.floats(0.01, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_fast_kernel_sum_equals_the_direct_sum(x_fit: list[float], gamma: float, seed: int):
    """Unsorted, duplicated fit points and steep kernels: the sweep equals Σ d·exp(−γ|c − x|)."""
    rng = np.random.default_rng(seed)
    x = np.array(x_fit)
    coef = rng.normal(scale=100, size=x.size)
    conf = np.concatenate([x, rng.uniform(-0.2, 1.2, 200)])  # on, between and beyond the points
    direct = np.exp(-gamma * np.abs(conf[:, None] - x)) @ coef
    model = KernelRidgeCalibration(gamma=gamma, x_fit=x, dual_coef=coef)
    np.testing.assert_allclose(model.predict(conf), direct, rtol=0, atol=1e-9 * np.abs(coef).sum())


def test_nodata_stays_nan() -> None:
    model = KernelRidgeCalibration(gamma=1.0, x_fit=np.array([0.0, 1.0]), dual_coef=np.ones(2))
    result = model.apply(np.array([np.nan, 0.5], dtype=np.float32))
    assert np.isnan(result[0]) and np.isfinite(result[1])


# ----------------------------------------------------------------------------- isotonic


def test_isotonic_interpolates_and_holds_its_ends() -> None:
    model = isotonic_table()
    np.testing.assert_allclose(
        model.predict(np.array([0.0, 0.1, 0.3, 0.5, 0.7, 1.0])), [0.0, 0.0, 0.3, 0.6, 0.775, 0.95]
    )


def test_isotonic_json_round_trip(tmp_path: Path) -> None:
    model = isotonic_table()
    path = tmp_path / "isotonic.json"
    model.save(path)
    assert json.loads(path.read_text())["method"] == "isotonic"
    loaded = CalibrationModel.load(path)
    assert isinstance(loaded, IsotonicCalibration)
    np.testing.assert_array_equal(loaded.x, model.x)
    np.testing.assert_array_equal(loaded.y, model.y)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_isotonic_check_table_is_verified() -> None:
    data = isotonic_table().to_dict()
    data["check"] = {"c": [0.3], "calibrated_unclipped": [0.3]}
    CalibrationModel.from_dict(data)
    data["check"]["calibrated_unclipped"] = [0.4]
    with pytest.raises(InputError, match="fails its own check table"):
        CalibrationModel.from_dict(data)


# ----------------------------------------------------------------------------- bad files


def kernel_ridge_dict(**changes: object) -> dict:
    data = {"kernel": "laplacian", "gamma": 1.0, "x_fit": [0.0, 0.5, 1.0], "dual_coef": [1, 2, 3]}
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not valid JSON"),
        (b"\x80\x04\x95\x0b\x00\x00\x00", "not JSON text"),  # how a pickle starts
        ("[1, 2, 3]", "must be a JSON object"),
        (json.dumps(kernel_ridge_dict(kernel="rbf")), "unknown calibration kernel 'rbf'"),
        (json.dumps(kernel_ridge_dict(dual_coef=[1, 2])), "x_fit has 3 values but dual_coef has 2"),
        (json.dumps(kernel_ridge_dict(x_fit=[])), "non-empty list of finite numbers"),
        (json.dumps(kernel_ridge_dict(x_fit=["a", "b", "c"])), "list of numbers"),
        (json.dumps(kernel_ridge_dict(gamma="1")), "gamma must be a number"),
        (json.dumps(kernel_ridge_dict(gamma=-1.0)), "gamma must be a positive number"),
        (json.dumps({"kernel": "laplacian", "x_fit": [0.5]}), "unknown calibration method"),
        (json.dumps({"method": "platt", "a": 1}), "unknown calibration method 'platt'"),
        (json.dumps({"method": "isotonic", "x": [0.1]}), "lacks y"),
        (json.dumps({"method": "isotonic", "x": [0.5, 0.1], "y": [0, 1]}), "strictly increasing"),
        (json.dumps({"method": "isotonic", "x": [0.1, 0.5], "y": [1, 0]}), "non-decreasing"),
        (
            json.dumps(kernel_ridge_dict(check={"c": [0.5], "calibrated_unclipped": [9.0]})),
            "fails its own check table",
        ),
    ],
)
def test_bad_files_raise_input_errors(tmp_path: Path, content: str | bytes, match: str) -> None:
    with pytest.raises(InputError, match=match):
        CalibrationModel.load(write(tmp_path, content))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read calibration file"):
        CalibrationModel.load(tmp_path / "absent.json")


def test_scikit_learn_column_dual_coef_is_accepted() -> None:
    model = CalibrationModel.from_dict(kernel_ridge_dict(dual_coef=[[1], [2], [3]]))
    assert isinstance(model, KernelRidgeCalibration) and model.dual_coef.shape == (3,)
