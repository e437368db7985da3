"""Confidence, outlines and median smoothing, whole-array and streaming, as the published deploy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given, settings
from hypothesis import strategies as st

from glaviz.calibration import CalibrationModel
from glaviz.engine.postprocess import (
    OUTLINE_NODATA,
    RowSmoother,
    apply_nodata,
    confidence,
    outlines,
    smooth_outlines,
)
from glaviz.errors import ConfigError

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
PROPERTY = settings(deadline=None, derandomize=True)

# ----------------------------------------------------------------------------- helpers


def smooth_streaming(image: np.ndarray, size: int | None, chunks: list[int]) -> np.ndarray:
    """Push ``image`` through a :class:`RowSmoother` in row blocks of the given sizes."""
    smoother = RowSmoother(size, image.shape[1])
    out: list[np.ndarray] = []
    start = 0
    for n in [*chunks, len(image)]:  # the last block takes whatever is left
        stop = min(start + n, len(image))
        released = smoother.push(image[start:stop])
        if released is not None:
            out.append(released)
        start = stop
    released = smoother.finish()
    if released is not None:
        out.append(released)
    return np.concatenate(out) if out else image[:0]


def binary_entropy_bits(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def read_band(path: Path) -> np.ndarray:
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(path) as src:
        return src.read(1)


def reference(name: str) -> Path:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"reference data not found at {path}")
    return path


# ----------------------------------------------------------------------------- confidence


def test_confidence_known_values() -> None:
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    clipped_certain = 1 - binary_entropy_bits(1e-6)  # clipping keeps a certain pixel below 1
    expected = [0.0, clipped_certain, 1 - binary_entropy_bits(0.1), clipped_certain]
    result = confidence(probs)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-7)
    assert confidence(probs, dtype=np.float64).dtype == np.float64
    np.testing.assert_allclose(confidence(probs, dtype=np.float64), expected, atol=1e-12)


def test_confidence_uses_base_2_not_the_number_of_classes() -> None:
    # The published entropy divides by log(2) whatever the class count: three equal classes
    # carry log2(3) bits, so the confidence is negative (no normalisation to [0, 1]).
    uniform3 = np.full((1, 3), 1 / 3)
    assert confidence(uniform3, dtype=np.float64)[0] == pytest.approx(1 - math.log2(3))


def test_outlines_are_the_argmax_with_ties_to_the_first_class() -> None:
    probs = np.array([[[0.2, 0.8], [0.5, 0.5], [0.7, 0.3]]], dtype=np.float32)
    result = outlines(probs)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, [[1, 0, 0]])


def test_apply_nodata_after_smoothing() -> None:
    pred = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.uint8)
    valid = np.array([[True, False, True], [True, True, False]])
    np.testing.assert_array_equal(apply_nodata(pred, valid), [[1, 255, 0], [0, 1, 255]])
    assert OUTLINE_NODATA == 255


# ----------------------------------------------------------------------------- smoothing


@pytest.mark.parametrize("size", [None, 0, 1])
def test_no_smoothing_passes_through(size: int | None) -> None:
    image = np.random.default_rng(0).integers(0, 2, (9, 7), dtype=np.uint8)
    np.testing.assert_array_equal(smooth_outlines(image, size), image)
    np.testing.assert_array_equal(smooth_streaming(image, size, [2, 3]), image)


def test_whole_array_smoothing_is_scipy_median_with_reflect_edges() -> None:
    image = np.random.default_rng(1).integers(0, 2, (30, 40), dtype=np.uint8)
    for size in (2, 3, 5):
        expected = scipy.ndimage.median_filter(image, size=size)  # the published call
        np.testing.assert_array_equal(smooth_outlines(image, size), expected)


@pytest.mark.parametrize("size", [-1, 2.5, True])
def test_bad_smoothing_size(size: object) -> None:
    with pytest.raises(ConfigError, match="smoothing must be a non-negative integer"):
        smooth_outlines(np.zeros((3, 3), dtype=np.uint8), size)  # type: ignore[arg-type]


@settings(PROPERTY, max_examples=150)
@given(
    size=st.sampled_from([1, 2, 3, 4, 5, 7]),
    height=st.integers(1, 40),
    width=st.integers(1, 25),
    chunks=st.lists(st.integers(0, 12), max_size=12),
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.05, 0.95),
)
def test_streaming_smoothing_equals_whole_array(
    size: int, height: int, width: int, chunks: list[int], seed: int, density: float
) -> None:
    image = (np.random.default_rng(seed).random((height, width)) < density).astype(np.uint8)
    np.testing.assert_array_equal(
        smooth_streaming(image, size, chunks), smooth_outlines(image, size)
    )


def test_smoother_holds_only_halo_rows() -> None:
    smoother = RowSmoother(5, 64)
    image = np.random.default_rng(3).integers(0, 2, (200, 64), dtype=np.uint8)
    released = 0
    for start in range(0, 200, 10):
        out = smoother.push(image[start : start + 10])
        released += 0 if out is None else len(out)
        assert smoother._rows is not None and len(smoother._rows) <= 2 + 10 + 2
    assert released == 198  # the last 2 rows wait for the bottom edge
    assert len(smoother.finish()) == 2


def test_smoother_rejects_misuse() -> None:
    smoother = RowSmoother(3, 8)
    with pytest.raises(ConfigError, match=r"shape \(n, 8\)"):
        smoother.push(np.zeros((2, 9), dtype=np.uint8))
    smoother.finish()
    with pytest.raises(ConfigError, match="after finish"):
        smoother.push(np.zeros((2, 8), dtype=np.uint8))


# ----------------------------------------------------------------------------- published outputs


def test_postprocessing_reproduces_published_deploy_outputs() -> None:
    """From the published blend, glaviz's post-processing gives the published GeoTIFFs."""
    probs = np.load(reference("expected/probs_global.npy"))
    plain = reference("expected/deploy_plain")
    smooth = reference("expected/deploy_smooth3_calibrated")

    np.testing.assert_array_equal(outlines(probs), read_band(plain / "outlines.tif"))
    np.testing.assert_allclose(confidence(probs), read_band(plain / "confidence.tif"), atol=1e-6)

    streamed = smooth_streaming(outlines(probs), 3, [192] * 3)
    np.testing.assert_array_equal(streamed, read_band(smooth / "outlines.tif"))
    model = CalibrationModel.load(reference("calibration/glavitu_global_softmax.json"))
    calibrated = model.apply(confidence(probs, dtype=np.float64))
    np.testing.assert_allclose(calibrated, read_band(smooth / "confidence.tif"), atol=1e-5)


@pytest.mark.parametrize("classes", [2, 3])
def test_confidence_is_bitwise_the_published_formula(classes: int) -> None:
    rng = np.random.default_rng(classes)
    probs = rng.random((40, 50, classes))
    probs /= probs.sum(-1, keepdims=True)
    probs[0, 0] = [1.0] + [0.0] * (classes - 1)
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    published = 1.0 - (-np.sum(p * np.log(p) / np.log(2.0), axis=-1))
    np.testing.assert_array_equal(confidence(probs, dtype=np.float64), published)
