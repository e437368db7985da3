"""Window grid, blend weights and the rolling-buffer blender against the whole-scene reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glaviz.engine.blend import RowBlender, blend_in_memory
from glaviz.engine.tiling import (
    TileGrid,
    blend_weights,
    extract_window,
    read_window_from_padded,
    taper_weights,
    tile_grid,
    window_weights,
)
from glaviz.errors import ConfigError, InputError

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

WindowModel = Callable[[int, int], np.ndarray]
#: Property tests draw the same examples on every run (reproducible in CI) and have no deadline.
PROPERTY = settings(deadline=None, derandomize=True)

# ----------------------------------------------------------------------------- helpers


def random_model(seed: int, patch: int, n_classes: int) -> WindowModel:
    """A deterministic stand-in for the network: a softmax that depends on the window origin."""

    def predict(row: int, col: int) -> np.ndarray:
        rng = np.random.default_rng((seed, row, col))
        logits = rng.normal(size=(patch, patch, n_classes)) * 3
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (probs / probs.sum(axis=-1, keepdims=True)).astype(np.float32)

    return predict


def blend_rolling(
    grid: TileGrid, model: WindowModel, n_classes: int, pop_each_row: bool = True
) -> np.ndarray:
    """Run :class:`RowBlender` the way the engine does and stitch what it releases."""
    blender = RowBlender(grid, n_classes)
    chunks: list[tuple[int, np.ndarray]] = []

    def collect(result: tuple[int, np.ndarray] | None) -> None:
        if result is not None:
            chunks.append(result)

    for k, row in enumerate(grid.row_origins):
        window_row = np.stack([model(row, col) for col in grid.col_origins])
        blender.add_row(k, window_row)
        if pop_each_row:
            collect(blender.pop_finished())
    collect(blender.finish())
    expected_start = 0
    for start, rows in chunks:  # contiguous, in order, never empty, float32, full width
        assert start == expected_start
        assert rows.shape[1:] == (grid.width, n_classes) and len(rows) > 0
        assert rows.dtype == np.float32
        expected_start += len(rows)
    assert expected_start == grid.height
    return np.concatenate([rows for _, rows in chunks])


@st.composite
def grids(draw: st.DrawFn) -> TileGrid:
    """Small scenes (1–120 px a side) with patches from 2 px to 64 px (incl. multiples of 16)."""
    patch = draw(st.sampled_from([2, 4, 6, 8, 10, 16, 32, 48, 64]))
    limit = min(120, 12 * patch)  # keeps the window count (and test time) small for tiny patches
    height = draw(st.integers(1, limit))
    width = draw(st.integers(1, limit))
    return tile_grid(height, width, patch)


# ----------------------------------------------------------------------------- the grid


def test_reference_scene_padding() -> None:
    grid = tile_grid(520, 610, 384)
    assert (grid.pad_top, grid.pad_left) == (124, 79)
    assert (grid.padded_height, grid.padded_width) == (768, 768)
    assert (grid.pad_bottom, grid.pad_right) == (124, 79)
    assert grid.stride == 192
    assert grid.row_origins == grid.col_origins == (0, 192, 384)
    assert grid.n_windows == 9


def test_reference_padding_matches_published_features() -> None:
    path = REFERENCE / "expected" / "features_global.npz"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")
    pad_h, pad_w, padded_h, padded_w = np.load(path)["padding"].tolist()
    grid = tile_grid(520, 610, 384)
    assert (grid.pad_top, grid.pad_left, grid.padded_height, grid.padded_width) == (
        pad_h,
        pad_w,
        padded_h,
        padded_w,
    )


def test_a_multiple_of_the_patch_still_gets_a_whole_patch_of_padding() -> None:
    grid = tile_grid(384, 768, 384)  # published quirk: target = patch * (n // patch + 1)
    assert (grid.padded_height, grid.pad_top) == (768, 192)
    assert (grid.padded_width, grid.pad_left) == (1152, 192)


@settings(PROPERTY, max_examples=200)
@given(
    size=st.integers(1, 5000),
    patch=st.integers(1, 300).map(lambda half: 2 * half),
)
def test_padding_formula(size: int, patch: int) -> None:
    grid = tile_grid(size, size, patch)
    assert grid.padded_height == patch * (size // patch + 1)
    assert grid.pad_top == (grid.padded_height - size) // 2
    assert 0 <= grid.pad_bottom - grid.pad_top <= 1  # the odd pixel goes to the bottom
    assert grid.pad_top < patch and grid.pad_bottom <= grid.stride
    assert grid.row_origins[0] == 0
    assert grid.row_origins[-1] + patch == grid.padded_height
    assert set(np.diff(grid.row_origins)) <= {grid.stride}
    assert len(grid.row_origins) == 2 * grid.padded_height // patch - 1


@settings(PROPERTY, max_examples=100)
@given(grid=grids())
def test_every_scene_pixel_is_covered_and_weights_are_positive(grid: TileGrid) -> None:
    weights = blend_weights(grid.patch)
    counts = np.zeros((grid.padded_height, grid.padded_width))
    covered = np.zeros((grid.padded_height, grid.padded_width), dtype=int)
    for _, _, row, col in grid.windows():
        counts[row : row + grid.patch, col : col + grid.patch] += weights
        covered[row : row + grid.patch, col : col + grid.patch] += 1
    assert covered[grid.scene_rows, grid.scene_cols].min() >= 1
    assert counts[grid.scene_rows, grid.scene_cols].min() > 0
    # and no window lies entirely in the padding, so no model call is wasted
    for _, _, row, col in grid.windows():
        assert not read_window_from_padded(grid, row, col).is_empty


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((100, 100, 0), ConfigError, "patch size must be a positive integer"),
        ((100, 100, 385), ConfigError, "even"),
        ((100, 100, 3.5), ConfigError, "positive integer"),
        ((0, 100, 384), InputError, "scene height"),
        ((100, -1, 384), InputError, "scene width"),
    ],
)
def test_bad_grid_arguments(args: tuple, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        tile_grid(*args)


def test_coordinate_helpers() -> None:
    grid = tile_grid(520, 610, 384)
    assert grid.to_scene(124, 79) == (0, 0)
    assert grid.to_padded(0, 0) == (124, 79)
    assert grid.window_centre(0, 0) == (192 - 124, 192 - 79)
    assert grid.window_centre(384, 384) == (576 - 124, 576 - 79)
    assert [w[:2] for w in grid.windows()][:4] == [(0, 0), (0, 1), (0, 2), (1, 0)]


# ----------------------------------------------------------------------------- reading windows


@settings(PROPERTY, max_examples=100)
@given(grid=grids(), data=st.data())
def test_window_reads_equal_slicing_the_zero_padded_scene(grid: TileGrid, data: st.DataObject):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    scene = rng.normal(size=(grid.height, grid.width, 3)).astype(np.float32)
    padded = np.pad(
        scene, ((grid.pad_top, grid.pad_bottom), (grid.pad_left, grid.pad_right), (0, 0))
    )
    for _, _, row, col in grid.windows():
        window = extract_window(scene, grid, row, col)
        np.testing.assert_array_equal(
            window, padded[row : row + grid.patch, col : col + grid.patch]
        )
    # a strip read (one whole window row) plans the same way
    row = data.draw(st.sampled_from(grid.row_origins))
    plan = read_window_from_padded(grid, row, 0, width=grid.padded_width)
    strip = np.zeros((grid.patch, grid.padded_width, 3), dtype=np.float32)
    strip[plan.window_rows, plan.window_cols] = scene[plan.scene_rows, plan.scene_cols]
    np.testing.assert_array_equal(strip, padded[row : row + grid.patch])


def test_window_read_flags() -> None:
    grid = tile_grid(1000, 1000, 384)  # padded 1152, pad 76
    inner = read_window_from_padded(grid, 384, 384)
    assert inner.is_full and not inner.is_empty
    assert inner.scene_rows == slice(308, 692) and inner.window_rows == slice(0, 384)
    corner = read_window_from_padded(grid, 0, 0)
    assert not corner.is_full
    assert corner.scene_rows == slice(0, 308) and corner.window_rows == slice(76, 384)
    outside = read_window_from_padded(grid, 0, 0, height=50)
    assert outside.is_empty


# ----------------------------------------------------------------------------- blend weights


def test_blend_weights_follow_the_published_formula() -> None:
    for patch in (2, 16, 384):
        weights = blend_weights(patch)
        grid = np.linspace(-1, 1, patch)
        expected = np.array(
            [[math.exp(-(math.hypot(x, y) ** 2) / 2) for x in grid] for y in grid]
        ) / math.sqrt(2 / math.pi)
        assert weights.dtype == np.float64 and weights.shape == (patch, patch)
        np.testing.assert_allclose(weights, expected, rtol=1e-15)
        np.testing.assert_array_equal(weights, weights.T)
        # linspace is not exactly symmetric about 0, so neither are the published weights:
        # a "tidier" symmetric grid would move the blend by an ulp, hence bit-equality below.
        np.testing.assert_allclose(weights, weights[::-1, ::-1], rtol=1e-15)
        x, y = np.meshgrid(np.linspace(-1, 1, patch), np.linspace(-1, 1, patch))
        published = np.exp(-((np.sqrt(x**2 + y**2) - 0) ** 2) / 2 / 1**2) / np.sqrt(2 / np.pi) / 1
        np.testing.assert_array_equal(weights, published)
    corner = blend_weights(384)[0, 0]
    assert corner == pytest.approx(math.exp(-1) / math.sqrt(2 / math.pi), rel=1e-15)


# ----------------------------------------------------------------------------- blending


@settings(PROPERTY, max_examples=60)
@given(grid=grids(), value=st.floats(0.0, 1.0), n_classes=st.integers(1, 3))
def test_a_constant_model_gives_a_constant_output(
    grid: TileGrid, value: float, n_classes: int
) -> None:
    probs = np.full((grid.patch, grid.patch, n_classes), value, dtype=np.float32)
    result = blend_rolling(grid, lambda row, col: probs, n_classes)
    np.testing.assert_allclose(result, np.float32(value), rtol=1e-6, atol=1e-7)


@settings(PROPERTY, max_examples=80)
@given(
    grid=grids(),
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(1, 3),
    pop_each_row=st.booleans(),
)
def test_rolling_blend_equals_in_memory_blend(
    grid: TileGrid, seed: int, n_classes: int, pop_each_row: bool
) -> None:
    model = random_model(seed, grid.patch, n_classes)
    rolling = blend_rolling(grid, model, n_classes, pop_each_row)
    reference = blend_in_memory(grid, model)
    # Same float64 additions in the same order per pixel: bit-identical, not merely close.
    np.testing.assert_array_equal(rolling, reference)
    assert reference.shape == (grid.height, grid.width, n_classes)


def test_in_memory_blend_is_the_published_accumulation() -> None:
    """An independent transcription of the published loop (float64 padded arrays) agrees."""
    grid = tile_grid(50, 37, 16)
    model = random_model(7, 16, 2)
    weights = blend_weights(16)[..., None]
    weighted = np.zeros((grid.padded_height, grid.padded_width, 2))
    counts = np.zeros((grid.padded_height, grid.padded_width, 1))
    row = 0
    while row + 16 <= grid.padded_height:
        col = 0
        while col + 16 <= grid.padded_width:
            weighted[row : row + 16, col : col + 16] += weights * model(row, col)
            counts[row : row + 16, col : col + 16] += weights
            col += 8
        row += 8
    published = (weighted / counts)[grid.scene_rows, grid.scene_cols]
    np.testing.assert_array_equal(blend_in_memory(grid, model, dtype=np.float64), published)
    # the rolling blender can hand out the unrounded float64 blend too
    blender = RowBlender(grid, 2, dtype=np.float64)
    released = []
    for k, row in enumerate(grid.row_origins):
        blender.add_row(k, np.stack([model(row, col) for col in grid.col_origins]))
        released.append(blender.pop_finished())
    released.append(blender.finish())
    rows = np.concatenate([chunk for _, chunk in filter(None, released)])
    np.testing.assert_array_equal(rows, published)


def test_blender_memory_does_not_grow_with_scene_height() -> None:
    small = RowBlender(tile_grid(100, 3000, 384), 2)
    tall = RowBlender(tile_grid(30000, 3000, 384), 2)
    assert small.buffer_nbytes == tall.buffer_nbytes == 384 * 3072 * 3 * 8


def test_blender_releases_rows_as_soon_as_they_are_final() -> None:
    grid = tile_grid(1000, 40, 384)  # padded 1152, pad_top 76, window rows at 0, 192, …, 768
    blender = RowBlender(grid, 2)
    ones = np.full((len(grid.col_origins), 384, 384, 2), 0.5, dtype=np.float32)
    blender.add_row(0, ones)
    assert blender.pop_finished() is None  # nothing final yet
    blender.add_row(1, ones)
    start, rows = blender.pop_finished()  # padded rows 0…191 are final: scene rows 0…115
    assert (start, len(rows)) == (0, 192 - 76)
    assert blender.pop_finished() is None


def test_blender_rejects_misuse() -> None:
    grid = tile_grid(100, 100, 16)
    blender = RowBlender(grid, 2)
    good = np.zeros((len(grid.col_origins), 16, 16, 2), dtype=np.float32)
    with pytest.raises(InputError, match="expected row 0, got 1"):
        blender.add_row(1, good)
    with pytest.raises(InputError, match="shape"):
        blender.add_row(0, good[..., :1])
    blender.add_row(0, good)
    with pytest.raises(InputError, match="every window row must be added"):
        blender.finish()
    with pytest.raises(InputError, match="n_classes"):
        RowBlender(grid, 0)


@settings(PROPERTY, max_examples=40)
@given(half=st.integers(1, 200))
def test_taper_weights_sum_to_one_where_two_windows_overlap(half: int) -> None:
    patch = 2 * half
    w = taper_weights(patch)
    assert w.shape == (patch, patch) and np.all(w > 0) and np.allclose(w, w.T)
    # At stride patch/2, each pixel of the interior lies in four windows, at offsets i and
    # i + patch/2 per axis: their weights add up to one, so no window edge can show.
    total = w[:half, :half] + w[:half, half:] + w[half:, :half] + w[half:, half:]
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


@settings(PROPERTY, max_examples=40)
@given(grid=grids(), seed=st.integers(0, 2**32 - 1))
def test_taper_blend_streams_like_the_in_memory_blend(grid: TileGrid, seed: int) -> None:
    model = random_model(seed, grid.patch, 2)
    blender = RowBlender(grid, 2, blend="taper")
    chunks = []
    for k, row in enumerate(grid.row_origins):
        blender.add_row(k, np.stack([model(row, col) for col in grid.col_origins]))
        chunks.append(blender.pop_finished())
    chunks.append(blender.finish())
    rolling = np.concatenate([c for _, c in filter(None, chunks)])
    np.testing.assert_array_equal(rolling, blend_in_memory(grid, model, blend="taper"))


def test_unknown_blend_is_a_config_error() -> None:
    assert np.array_equal(window_weights(16, "gaussian"), blend_weights(16))
    with pytest.raises(ConfigError, match="blend must be one of gaussian, taper"):
        window_weights(16, "box")
