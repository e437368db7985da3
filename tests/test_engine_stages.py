"""The deploy stages on their own: the stack reader, batch sizes, quicklook, import structure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from glaviz.engine.inference import (
    CPU_BUDGET_MB,
    MAX_BATCH,
    activation_bytes,
    batch_size_for_budget,
)
from glaviz.engine.quicklook import MAX_SIDE, Quicklook, panel_shape, sample_positions
from glaviz.engine.reader import SceneRowQueue, SceneRows, StackReader
from glaviz.engine.tiling import extract_window, tile_grid
from glaviz.model.glavitu import GlaViTUConfig
from glaviz.published.normalisation import NormalisationStats, normalise_bands, normalise_group
from glaviz.published.stack_layout import StackLayout
from tests.helpers import write_stack

STATS = NormalisationStats.published()


def _scene(stack: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The whole stack normalised the simple way, and its validity."""
    with rasterio.open(stack) as ds:
        raw = np.moveaxis(ds.read(), 0, -1)
    scene = {
        "optical": np.nan_to_num(normalise_group("optical", raw[..., :6], STATS)),
        "dem": np.nan_to_num(normalise_group("dem", raw[..., 6:8], STATS)),
    }
    return scene, np.all(np.isfinite(raw), axis=-1)


@pytest.mark.parametrize("threads", [1, 3])
def test_reader_windows_equal_the_padded_scene_and_rows_are_read_once(
    tmp_path, monkeypatch, threads
) -> None:
    stack = write_stack(tmp_path / "s.tif", height=150, width=700)
    with rasterio.open(stack, "r+") as ds:  # a DEM hole: invalid, and zero after normalising
        dem = ds.read(7)
        dem[60:64, 300:310] = np.nan
        ds.write(dem, 7)
    scene, valid = _scene(stack)
    grid = tile_grid(150, 700, 64)
    reads: list[tuple[int, int]] = []
    original = rasterio.io.DatasetReader.read

    def counting(self, *args, window=None, **kwargs):
        if window is not None:
            reads.append((int(window.row_off), int(window.height)))
        return original(self, *args, window=window, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", counting)
    layout = StackLayout.read(stack)
    columns = sample_positions(700, 100)
    reader = StackReader(
        stack,
        layout=layout,
        groups=("optical", "dem"),
        stats=STATS,
        grid=grid,
        rgb_columns=columns,
        threads=threads,
    )
    seen = SceneRowQueue()
    with reader:
        for item in reader:
            r = grid.row_origins[item.k]
            for j, c in enumerate(grid.col_origins):
                for group, data in scene.items():
                    window = extract_window(data, grid, r, c)
                    np.testing.assert_array_equal(item.inputs[group][j], window)
            assert item.rows is not None
            seen.put(item.rows)
    rows = seen.take(0, 150)
    np.testing.assert_array_equal(rows.valid, valid)
    assert not rows.valid[60:64, 300:310].any()
    with rasterio.open(stack) as ds:
        rgb = np.moveaxis(ds.read([3, 2, 1]), 0, -1)[:, columns]
    np.testing.assert_array_equal(rows.rgb, rgb)
    # Every scene row read exactly once per column chunk.
    per_row = np.zeros(150, int)
    for start, n in reads:
        per_row[start : start + n] += 1
    assert np.all(per_row == per_row[0]) and per_row[0] == len(reader._chunks)


def test_normalise_bands_is_bit_identical_to_normalise_group() -> None:
    rng = np.random.default_rng(3)
    for group, scale in (("optical", 1.0), ("dem", 3000.0), ("co_pol_sar", 0.5)):
        bands = STATS.bounds(group)[0].size
        x = (rng.random((bands, 9, 11)) * scale).astype(np.float32)
        x[:, 2, 3] = np.nan
        out = np.empty((9, 11, bands), np.float32)
        normalise_bands(group, x, STATS, out=out)
        expected = np.nan_to_num(normalise_group(group, np.moveaxis(x, 0, -1), STATS))
        np.testing.assert_array_equal(out, expected)
        assert np.all(np.isfinite(out))


def test_stack_with_a_nodata_value_is_read_as_nan(tmp_path) -> None:
    stack = write_stack(tmp_path / "s.tif", height=20, width=20)
    with rasterio.open(stack) as ds:
        data, profile = ds.read(), ds.profile
        names = ds.descriptions
    data[6, 4, 4] = -9999
    profile.update(nodata=-9999)
    other = tmp_path / "nd.tif"
    with rasterio.open(other, "w", **profile) as ds:
        ds.write(data)
        for i, name in enumerate(names, start=1):
            ds.set_band_description(i, name)
    with rasterio.open(other) as ds:
        dem = StackLayout.read(ds).read_groups(ds, ["dem"])["dem"]
    assert np.isnan(dem[4, 4, 0]) and np.isfinite(dem[5, 5, 0])


def test_batch_size_follows_the_activation_budget() -> None:
    published = GlaViTUConfig.create(features=["optical", "dem"])
    tiny = GlaViTUConfig.create(features=["optical", "dem"], preset="tiny", patch_size=64)
    # The published model keeps one window per call on a CPU, as memory was measured.
    assert activation_bytes(published) == pytest.approx(0.45e9, rel=0.05)
    assert batch_size_for_budget(published, budget_mb=CPU_BUDGET_MB) == 1
    assert batch_size_for_budget(published, budget_mb=4096) == 9
    assert batch_size_for_budget(published, budget_mb=4096, tta=True) == 1
    small = batch_size_for_budget(tiny, budget_mb=CPU_BUDGET_MB)
    assert 64 <= small <= MAX_BATCH
    assert batch_size_for_budget(tiny, budget_mb=1) == 1


def test_scene_row_queue_hands_rows_back_in_any_blocks() -> None:
    queue = SceneRowQueue()
    valid = np.arange(20).reshape(10, 2) % 3 == 0
    queue.put(SceneRows(0, valid[:4]))
    queue.put(SceneRows(4, valid[4:]))
    a = queue.take(0, 3)
    b = queue.take(3, 7)
    np.testing.assert_array_equal(np.concatenate([a.valid, b.valid]), valid)
    with pytest.raises(RuntimeError, match="internal"):
        queue.take(10, 1)


@pytest.mark.parametrize(("height", "width"), [(600, 10980), (10980, 10980), (50, 30)])
def test_quicklook_fits_the_size_limit(height, width) -> None:
    rows, cols = panel_shape(height, width)
    assert max(rows, 2 * cols + 8) <= MAX_SIDE
    look = Quicklook(height, width)
    look.add_rgb(0, np.full((height, len(look.columns), 3), 0.3, np.float32))
    look.add_outlines(0, np.ones((height, width), np.uint8)) if height < 1000 else None
    image = look.render()
    assert image.dtype == np.uint8 and max(image.shape[:2]) <= MAX_SIDE


def test_quicklook_draws_outlines_and_greys_invalid() -> None:
    look = Quicklook(40, 40)
    rgb = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    outlines = np.zeros((40, 40), np.uint8)
    outlines[10:20, 10:20] = 1
    outlines[30:, :] = 255
    look.add_rgb(0, rgb[:, look.columns])
    look.add_outlines(0, outlines)
    look.add_confidence(0, np.full((40, 40), 0.5, np.float32))
    image = look.render()
    left = image[:, :40]
    assert tuple(left[10, 15]) == (0, 170, 255)  # the outline's edge
    assert tuple(left[15, 15]) != (0, 170, 255)  # inside stays natural colour
    assert tuple(left[35, 5]) == (128, 128, 128)
    assert image.shape == (40, 40 + 8 + 40, 3)


def test_no_import_cycle_between_engine_and_calibration() -> None:
    code = (
        "import sys, glaviz.calibration, glaviz.calibration.fit, glaviz.calibration.reliability\n"
        "assert not [m for m in sys.modules if m.startswith('glaviz.engine')], sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
