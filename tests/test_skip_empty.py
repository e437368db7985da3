"""Windows with no valid pixel are not computed, and no output at a valid pixel changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from glaviz.config import DeployConfig
from glaviz.engine.blend import blend_in_memory
from glaviz.engine.deploy import deploy
from glaviz.engine.loop import window_loop
from glaviz.engine.reader import SceneRows, WindowRow
from glaviz.engine.selection import WindowSelection
from glaviz.engine.tiling import extract_window, tile_grid, window_hits
from tests.helpers import write_stack

HEIGHT, WIDTH = 200, 260


def orbit_edge_and_cloud(path: Path) -> Path:
    """A scene whose top-left corner lies outside the swath (a wedge of no-data, 28 % of the
    scene) and whose bottom-right corner is under a cloud mask (optical no-data)."""
    write_stack(path, height=HEIGHT, width=WIDTH, seed=3)
    with rasterio.open(path, "r+") as ds:
        data = ds.read()
        rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
        data[:6][:, rows + cols < 170] = np.nan
        data[:6, 110:, 150:] = np.nan
        ds.write(data)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return orbit_edge_and_cloud(tmp_path_factory.mktemp("skip") / "stack.tif")


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.mark.parametrize("smoothing", [0, 5])
def test_skipping_empty_windows_changes_no_valid_pixel(scene, tmp_path, smoothing) -> None:
    """The built-in demo model on an orbit-edge wedge and a cloud block: skip-empty against
    every window computed. Outlines are identical, with and without smoothing (whose median
    reads the argmax of invalid neighbours: the windows under them are kept, see
    glaviz.engine.selection). Probabilities at valid pixels, measured max |Δ|: 0.0 on this scene
    (with the demo model and with tests.helpers.tiny_bundle alike), and 1.2e-7 (one float32 step
    near 1) with the tiny bundle on a 120 × 150 variant of it, where a window shares its batch
    with other windows than before; the bound of 1e-6 allows for that rounding only."""
    runs = {}
    for skip in (True, False):
        out = tmp_path / f"skip{skip}"
        config = DeployConfig(
            stack=scene, weights="demo", output=out, probabilities=True, smoothing=smoothing
        )
        runs[skip] = deploy(config, skip_empty=skip)
    skipped, full = runs[True], runs[False]
    assert skipped.selection.no_valid_pixel >= 8
    assert skipped.windows_computed + skipped.selection.no_valid_pixel == full.windows_computed
    outlines = read(tmp_path / "skipTrue" / "outlines.tif")
    np.testing.assert_array_equal(outlines, read(tmp_path / "skipFalse" / "outlines.tif"))
    assert {0, 1, 255} <= set(np.unique(outlines))  # glacier, other and nodata all present
    valid = outlines[0] != 255
    probs = read(tmp_path / "skipTrue" / "probabilities.tif")[:, valid]
    assert (
        np.abs(probs - read(tmp_path / "skipFalse" / "probabilities.tif")[:, valid]).max() <= 1e-6
    )
    record = json.loads((tmp_path / "skipTrue" / "run.json").read_text())
    assert record["windows"] == full.windows
    assert record["windows_computed"] == skipped.windows_computed
    assert record["windows_skipped"] == {
        "no_valid_pixel": skipped.selection.no_valid_pixel,
        "outside_roi": 0,
    }
    assert record["pixels"]["not_mapped"] == 0
    assert record["pixels"]["invalid_input"] == int(np.count_nonzero(~valid))
    counts = skipped.to_json()["counts"]
    assert counts["windows_skipped_no_valid_pixel"] == skipped.selection.no_valid_pixel
    assert "without a valid pixel skipped" in skipped.summary()


# --- the window loop, without a model ------------------------------------------------------


class _Echo:
    """A stand-in model: each window's 'probabilities' are its input's first two bands."""

    batch_size = 3

    def predict(self, inputs: dict[str, list[np.ndarray]]) -> np.ndarray:
        return np.stack([w[..., :2] for w in inputs["x"]]).astype(np.float32)


def _source(scene: np.ndarray, valid: np.ndarray, grid) -> list[WindowRow]:
    """Window rows as the stack reader yields them: each with the scene rows read for it."""
    rows, read_until = [], 0
    for k, origin in enumerate(grid.row_origins):
        stop = min(max(origin + grid.patch - grid.pad_top, 0), grid.height)
        start = min(read_until, stop)
        windows = [extract_window(scene, grid, origin, c) for c in grid.col_origins]
        rows.append(WindowRow(k, {"x": windows}, SceneRows(start, valid[start:stop])))
        read_until = max(read_until, stop)
    return rows


@pytest.mark.parametrize("halo", [0, 2, 9])
def test_loop_leaves_out_empty_windows_and_keeps_every_valid_pixel(halo) -> None:
    """Random no-data blobs, the top rows all empty (nothing computed until the first valid
    row, so the blend starts late): every pixel within ``halo`` of a valid one is bit-identical
    to blending every window, no empty window is computed, and nothing else is NaN."""
    rng = np.random.default_rng(halo)
    grid = tile_grid(75, 101, 16)
    valid = rng.random((75, 101)) < 0.002
    valid[40:44, 60:70] = True
    valid[:20] = False
    scene = rng.random((75, 101, 2)).astype(np.float32) + 0.1
    selection = WindowSelection(grid, halo=halo)
    blocks = list(
        window_loop(
            _source(scene, valid, grid),
            grid=grid,
            predictor=_Echo(),
            selection=selection,
            n_classes=2,
        )
    )
    probs = np.concatenate([b.probs for b in blocks])
    full = blend_in_memory(
        grid, lambda r, c: extract_window(scene, grid, r, c)[..., :2], dtype=np.float64
    )
    hits = window_hits(valid, grid, halo)
    assert selection.counts.computed == int(hits.sum()) < grid.n_windows
    assert selection.counts.no_valid_pixel == grid.n_windows - int(hits.sum())
    near = _dilate(valid, halo)
    np.testing.assert_array_equal(probs[near], full[near])
    covered = ~np.isnan(probs[..., 0])
    assert covered[near].all() and not covered.all()


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dr in range(-r, r + 1):
        for dc in range(-r, r + 1):
            shifted = np.zeros_like(mask)
            src = mask[
                max(-dr, 0) : mask.shape[0] - max(dr, 0), max(-dc, 0) : mask.shape[1] - max(dc, 0)
            ]
            shifted[
                max(dr, 0) : max(dr, 0) + src.shape[0], max(dc, 0) : max(dc, 0) + src.shape[1]
            ] = src
            out |= shifted
    return out


def test_a_scene_without_a_valid_pixel_computes_nothing() -> None:
    grid = tile_grid(40, 50, 16)
    scene = np.ones((40, 50, 2), np.float32)
    selection = WindowSelection(grid)
    blocks = list(
        window_loop(
            _source(scene, np.zeros((40, 50), bool), grid),
            grid=grid,
            predictor=_Echo(),
            selection=selection,
            n_classes=2,
        )
    )
    assert selection.counts.computed == 0
    assert selection.counts.no_valid_pixel == grid.n_windows
    assert np.isnan(np.concatenate([b.probs for b in blocks])).all()


def test_window_hits_match_a_brute_force_check() -> None:
    rng = np.random.default_rng(4)
    grid = tile_grid(61, 83, 16)
    mask = rng.random((61, 83)) < 0.003
    for halo in (0, 3):
        hits = window_hits(mask, grid, halo)
        for k, j, row, col in grid.windows():
            r0, c0 = row - grid.pad_top - halo, col - grid.pad_left - halo
            r1, c1 = r0 + grid.patch + 2 * halo, c0 + grid.patch + 2 * halo
            part = mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)]
            assert hits[k, j] == part.any(), (k, j, halo)
