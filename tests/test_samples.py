"""Sample data: deterministic for a seed, georeferenced, and in the published benchmark layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio

from glaviz.errors import ConfigError, InputError
from glaviz.published.benchmark import BenchmarkDataset, crop_padding, find_split, split_of
from glaviz.samples import (
    REGION_STYLES,
    make_benchmark,
    make_benchmark_splits,
    make_scene,
    padded_size,
    synthesize_scene,
)


def _digest(path: Path) -> str:
    with rasterio.open(path) as ds:
        return hashlib.sha256(ds.read().tobytes()).hexdigest()


def _h5_digest(path: Path) -> str:
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for name in sorted(f):
            for key in sorted(f[name]):
                h.update(f[name][key][()].tobytes())
            for key in sorted(f[name].attrs):
                h.update(repr(f[name].attrs[key]).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Scenes


def test_scene_is_deterministic_and_georeferenced(tmp_path: Path) -> None:
    a = make_scene(tmp_path / "a", size=(48, 64), seed=3)
    b = make_scene(tmp_path / "b", size=(48, 64), seed=3)
    c = make_scene(tmp_path / "c", size=(48, 64), seed=4)
    for name in ("optical", "elevation", "truth"):
        assert _digest(getattr(a, name)) == _digest(getattr(b, name))
    assert _digest(a.optical) != _digest(c.optical)
    with rasterio.open(a.optical) as ds:
        assert ds.count == 6 and ds.dtypes[0] == "float32"
        assert ds.crs.to_epsg() == 32632
        assert ds.transform.a == 10.0 and ds.transform.e == -10.0
        assert ds.descriptions[0] == "blue" and ds.descriptions[5] == "swir2"
    with rasterio.open(a.truth) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert set(np.unique(ds.read(1))) <= {0, 1, 255}


def test_scene_spectra_separate_glaciers() -> None:
    scene = synthesize_scene((128, 128), seed=0)
    assert 0.05 < scene.glacier.mean() < 0.6
    assert (~scene.valid).any(), "a few invalid (NaN) pixels are part of the sample"
    assert np.isnan(scene.optical[~scene.valid]).all()
    ok = scene.valid
    ice = scene.optical[scene.glacier & ok]
    land = scene.optical[~scene.glacier & ok]
    # Snow and ice: bright visible, dark SWIR; the snow index separates most pixels.
    assert ice[:, 1].mean() > 2 * land[:, 1].mean()
    assert ice[:, 4].mean() < land[:, 4].mean()
    ndsi = lambda x: (x[:, 1] - x[:, 4]) / (x[:, 1] + x[:, 4])  # noqa: E731
    assert np.mean(ndsi(ice) > 0.4) > 0.85 and np.mean(ndsi(land) > 0.4) < 0.1


def test_scene_rejects_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="unknown region"):
        synthesize_scene((32, 32), style="MARS")
    with pytest.raises(ConfigError, match="at least 8"):
        synthesize_scene((4, 32))


# --------------------------------------------------------------------------------------------------
# Benchmark layout


def test_benchmark_layout(tmp_path: Path) -> None:
    path = make_benchmark(
        tmp_path / "b.h5", tiles=3, tile_size=(40, 56), patch_size=32, regions=("ALP", "HMA")
    )
    with h5py.File(path, "r") as f:
        names = list(f)
        assert len(names) == 3
        for name in names:
            tile = f[name]
            a = dict(tile.attrs)
            region = str(a["region"])
            assert name.startswith(f"{region}-") and len(name.split("-")) == 3
            assert str(a["subregion"]).startswith(f"{region}-")
            # Stored size: the published padded size; padding centred and symmetric.
            assert (a["height"], a["width"]) == (padded_size(40, 32), padded_size(56, 32))
            assert (a["original_height"], a["original_width"]) == (40, 56)
            assert a["height"] == 40 + 2 * a["padding_height"]
            assert a["width"] == 56 + 2 * a["padding_width"]
            assert a["padding_height"] > 0 and a["padding_width"] > 0
            # The published window loop (stride patch/2, row + patch <= height) covers all.
            assert a["height"] % 32 == 0 and a["width"] % 32 == 0
            assert a["xmin"] < a["xmax"] and a["ymin"] < a["ymax"]
            lat = (a["ymin"] + a["ymax"]) / 2
            assert abs(lat - REGION_STYLES[region].lat) < 2
            for group, bands in (("optical", 6), ("dem", 2), ("outlines", 2)):
                ds = tile[group]
                assert ds.dtype == np.float32
                assert ds.shape == (a["height"], a["width"], bands)
            optical, dem, labels = tile["optical"][()], tile["dem"][()], tile["outlines"][()]
            # Already normalised with the published min/max: inside [0, 1].
            assert optical.min() >= 0.0 and optical.max() <= 1.0
            assert dem.min() >= 0.0 and dem.max() <= 1.0
            np.testing.assert_array_equal(labels.sum(-1), 1.0)
            ph, pw = a["padding_height"], a["padding_width"]
            assert (labels[:ph, :, 1] == 0).all() and (optical[:ph] == 0).all()
            inner = crop_padding(labels, ph, pw)
            assert inner.shape == (40, 56, 2) and inner[..., 1].any()


def test_benchmark_deterministic_and_splits_differ(tmp_path: Path) -> None:
    kw = {"tiles": (2, 1, 1), "tile_size": 32, "patch_size": 16, "seed": 5}
    a = make_benchmark_splits(tmp_path / "a", **kw)
    b = make_benchmark_splits(tmp_path / "b", **kw)
    for split in ("train", "val", "test"):
        assert _h5_digest(a[split]) == _h5_digest(b[split])
    assert _h5_digest(a["val"]) != _h5_digest(a["test"])


def test_benchmark_rejects_odd_tiles(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="even"):
        make_benchmark(tmp_path / "x.h5", tile_size=33, patch_size=16)
    assert not (tmp_path / "x.h5").exists()


# --------------------------------------------------------------------------------------------------
# Reader


def test_reader_filters_and_windows(tmp_path: Path) -> None:
    path = make_benchmark(
        tmp_path / "b.h5", tiles=4, tile_size=32, patch_size=16, regions=("ALP", "HMA")
    )
    with BenchmarkDataset(path) as ds:
        assert len(ds) == 4 and ds.regions == ("ALP", "HMA")
        assert ds.groups == ("optical", "dem")
        alp = ds.tiles(regions=["ALP"])
        assert {t.region for t in alp} == {"ALP"} and len(alp) == 2
        sub = ds.tiles(subregions=["HMA-1"])
        assert [t.subregion for t in sub] == ["HMA-1"]
        assert ds.tiles(groups=["thermal"]) == []
        tile = alp[0]
        x = ds.read(tile.name, ["optical"], window=(3, 5, 16, 16))
        assert x["optical"].shape == (16, 16, 6)
        assert ds.labels(tile.name).shape == (tile.height, tile.width, 2)
        lat, _ = tile.centre
        assert tile.bounds[2] < lat < tile.bounds[3]
        with pytest.raises(InputError, match="has groups optical, dem; the config asks for in_sar"):
            ds.require_groups(["optical", "in_sar"])
        with pytest.raises(InputError, match="no tile"):
            ds.info("NOPE-1-1")


def test_crop_padding_zero_is_not_empty() -> None:
    a = np.arange(5 * 6).reshape(5, 6)
    assert crop_padding(a, 0, 0).shape == (5, 6)
    assert crop_padding(a, 1, 2).shape == (3, 2)
    with pytest.raises(InputError):
        crop_padding(a, 3, 0)


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        BenchmarkDataset(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        BenchmarkDataset(tmp_path / "text.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(InputError, match="no tile groups"):
        BenchmarkDataset(tmp_path / "empty.h5")


def test_published_layout_is_exact(tmp_path: Path) -> None:
    """What the real files hold (their HDF5 metadata): float64, contiguous, uncompressed, fill 0,
    bright_dark_outlines, epsg, stored sizes multiples of 384 with (stored - original) // 2
    padding above/left; and the reader crops the odd remainder exactly."""
    paths = make_benchmark_splits(
        tmp_path,
        tiles=(1, 1, 1),
        tile_size=(195, 202),
        patch_size=384,
        names="demo",
        layout="published",
    )
    assert [p.name for p in paths.values()] == [
        "gsgm_train_DEMO.hdf5",
        "gsgm_val_DEMO.hdf5",
        "gsgm_test_DEMO.hdf5",
    ]
    with h5py.File(paths["test"], "r") as f:
        (tile,) = f.values()
        assert dict(tile.attrs)["epsg"] == 4326 and tile.attrs["tile_name"] == tile.name[1:]
        assert (tile.attrs["height"], tile.attrs["width"]) == (384, 384)
        assert (tile.attrs["padding_height"], tile.attrs["padding_width"]) == (94, 91)
        for key, channels in (("optical", 6), ("dem", 2), ("outlines", 2)):
            ds = tile[key]
            assert ds.shape == (384, 384, channels) and ds.dtype == np.float64
            assert ds.chunks is None and ds.compression is None and ds.fillvalue == 0.0
        bd = tile["bright_dark_outlines"]
        assert bd.shape == (384, 384, 3) and bd.dtype == np.uint8 and bd.chunks is None
        labels = tile["outlines"][()]
        assert not labels[:94].any() and not labels[94 + 195 :].any()  # padding: (0, 0)
        inside = labels[94 : 94 + 195, 91 : 91 + 202]
        assert (inside.sum(-1) == 1).all()
        np.testing.assert_array_equal(
            bd[94 : 94 + 195, 91 : 91 + 202].astype(bool).any(-1), inside[..., 1] + inside[..., 0]
        )
    with BenchmarkDataset(paths["test"]) as data:
        (info,) = data
        assert info.unpadded == (94, 91, 195, 202) and data.groups == ("optical", "dem")
        window = data.read(info.name, ["optical"], window=info.unpadded)["optical"]
        assert window.dtype == np.float32 and window.shape == (195, 202, 6)
        assert info.crop(data.labels(info.name)).shape == (195, 202, 2)
    assert split_of(paths["val"]) == ("demo", "val")
    assert split_of("x/20230905_train_global_ps384.hdf5") == ("benchmark", "train")
    assert split_of("x/test.h5") == ("samples", "test") and split_of("x/other.h5") is None
    assert find_split(tmp_path, "val") == paths["val"]


def test_crop_padding_uneven() -> None:
    a = np.arange(7 * 6).reshape(7, 6, 1)
    assert crop_padding(a, 1, 1, height=4, width=3).shape == (4, 3, 1)
    assert crop_padding(a, 1, 1).shape == (5, 4, 1)
    with pytest.raises(InputError, match="does not fit"):
        crop_padding(a, 2, 0, height=6, width=6)
