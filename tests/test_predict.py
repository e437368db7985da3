"""glaviz predict: the published per-tile loop, the predictions layout, location inputs, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from glaviz.cli.app import main
from glaviz.config import PredictConfig
from glaviz.engine.blend import blend_in_memory
from glaviz.engine.predict import predict, tile_window_grid
from glaviz.errors import InputError, OutputExistsError
from glaviz.model.bundle import load_bundle
from glaviz.published.benchmark import BenchmarkDataset, crop_padding
from glaviz.samples import make_benchmark
from tests.helpers import PATCH, tiny_bundle


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    return make_benchmark(
        root / "test.h5", tiles=3, tile_size=(40, 50), patch_size=PATCH, regions=("ALP", "HMA")
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("model") / "tiny.glaviz")


def test_matches_published_loop_and_layout(split, bundle, tmp_path) -> None:
    out = tmp_path / "pred.h5"
    result = predict(PredictConfig(weights=str(bundle), dataset=split, output=out, batch_size=3))
    model = load_bundle(bundle).inference_model
    with h5py.File(split) as src, h5py.File(out) as dst:
        assert sorted(dst) == sorted(src) and result.tiles == 3
        for name in src:
            tile, pred = src[name], dst[name]
            features = {g: tile[g][()] for g in ("optical", "dem")}
            h, w = features["optical"].shape[:2]
            grid = tile_window_grid(h, w, PATCH)
            # The published predict.py: windows over the stored tile, no further padding.
            assert grid.pad_top == 0 and grid.padded_height == h

            def window(r: int, c: int, features=features) -> np.ndarray:
                x = {g: a[None, r : r + PATCH, c : c + PATCH] for g, a in features.items()}
                return np.asarray(model(x))[0]

            expected = blend_in_memory(grid, window, dtype=np.float64)
            ph, pw = tile.attrs["padding_height"], tile.attrs["padding_width"]
            expected = crop_padding(expected, ph, pw)
            np.testing.assert_allclose(pred["prob"][()], expected, atol=2e-5)
            np.testing.assert_array_equal(pred["pred"][()], expected.argmax(-1))
            truth = crop_padding(tile["outlines"][()], ph, pw)[..., 1]
            np.testing.assert_array_equal(pred["true"][()], truth)
            assert pred.attrs["region"] == tile.attrs["region"]
            assert pred.attrs["subregion"] == tile.attrs["subregion"]
            assert pred["prob"].shape == (40, 50, 2)


def test_grid_covers_tiles_not_multiple_of_stride() -> None:
    grid = tile_window_grid(70, 64, 32)
    assert grid.row_origins == (0, 16, 32, 38) and grid.col_origins == (0, 16, 32)
    small = tile_window_grid(20, 20, 32)
    assert small.n_windows == 1 and small.pad_top > 0


def test_region_encoding_uses_tile_region(split, tmp_path) -> None:
    names = ["ALP", "HMA", "unknown"]
    weights = tiny_bundle(
        tmp_path / "re.glaviz", location="region", location_size=3, region_names=names
    )
    out = tmp_path / "pred.h5"
    predict(PredictConfig(weights=str(weights), dataset=split, output=out, region=["HMA"]))
    with h5py.File(out) as f:
        assert {f[t].attrs["region"] for t in f} == {"HMA"}


def test_errors(split, bundle, tmp_path, capsys) -> None:
    out = tmp_path / "pred.h5"
    out.write_text("old")
    with pytest.raises(OutputExistsError):
        predict(PredictConfig(weights=str(bundle), dataset=split, output=out))
    assert out.read_text() == "old"
    with pytest.raises(InputError, match="does not exist"):
        predict(
            PredictConfig(
                weights=str(bundle), dataset=tmp_path / "none.h5", output=tmp_path / "x.h5"
            )
        )
    args = ["predict", "--weights", str(bundle), "--dataset", str(split), "-o", str(out)]
    assert main([*args, "--region", "NZ", "--overwrite"]) == 2
    assert "Error: no tile" in capsys.readouterr().err
    assert not list(tmp_path.glob(".pred.h5.*"))
    assert main([*args, "--overwrite"]) == 0
    with h5py.File(out) as f:
        assert len(f) == 3


def test_published_layout_is_read_window_by_window(bundle, tmp_path, monkeypatch) -> None:
    """float64 contiguous tiles padded unevenly to 384: never read whole, cropped exactly."""
    split = make_benchmark(
        tmp_path / "gsgm_test_DEMO.hdf5",
        tiles=1,
        tile_size=(77, 90),
        patch_size=384,
        layout="published",
    )
    reads: list[tuple[str, tuple[int, int, int, int] | None]] = []
    original = BenchmarkDataset._slice

    def spy(self, tile, name, window):
        reads.append((name, window))
        return original(self, tile, name, window)

    monkeypatch.setattr(BenchmarkDataset, "_slice", spy)
    out = tmp_path / "pred.h5"
    predict(PredictConfig(weights=str(bundle), dataset=split, output=out))
    assert reads and all(window is not None for _, window in reads)
    assert max(h * w for _, (_, _, h, w) in reads) <= 384 * PATCH  # one window row at most
    with h5py.File(split) as src, h5py.File(out) as dst:
        (name,) = src
        ph, pw = src[name].attrs["padding_height"], src[name].attrs["padding_width"]
        assert (ph, pw) == (153, 147)  # (384 - 77) // 2 above, one more row below
        assert dst[name]["prob"].shape == (77, 90, 2)
        truth = src[name]["outlines"][ph : ph + 77, pw : pw + 90, 1]
        np.testing.assert_array_equal(dst[name]["true"][()], truth)
