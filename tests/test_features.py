"""``glaviz features``: the stack's layout, warping, input checks, atomic writes and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from glaviz import __version__
from glaviz.cli.app import main
from glaviz.errors import ConfigError, InputError, OutputExistsError
from glaviz.features import compile_stack
from glaviz.features import stack as stack_module
from glaviz.published.groups import GROUP_STACK_BANDS
from tests.helpers import write_raster

OPT_CRS = "EPSG:32632"
OPT_TRANSFORM = from_origin(400_000, 5_100_000, 10, 10)
H, W = 72, 96
# Elevation as a plane in UTM metres: bilinear warping must reproduce it almost exactly.
DZ_DX, DZ_DY = 0.25, -0.15


def _optical(tmp_path: Path, bands: int = 6, **kw) -> Path:
    rng = np.random.default_rng(0)
    data = rng.uniform(0.0, 0.8, (bands, H, W)).astype(np.float32)
    return write_raster(tmp_path / "optical.tif", data, kw.get("crs", OPT_CRS), OPT_TRANSFORM)


def _centres(transform, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of every pixel centre, (h, w) each."""
    rows, cols = np.mgrid[0:h, 0:w] + 0.5
    return transform.c + cols * transform.a, transform.f + rows * transform.e


def _plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 1800.0 + DZ_DX * (x - 400_000) + DZ_DY * (y - 5_100_000)


def _dem_same_grid(tmp_path: Path) -> Path:
    z = _plane(*_centres(OPT_TRANSFORM, H, W)).astype(np.float32)
    return write_raster(tmp_path / "elevation.tif", z, OPT_CRS, OPT_TRANSFORM)


def _dem_geographic(tmp_path: Path) -> Path:
    """The same plane sampled on a lon/lat grid of about 1 arcsec, covering the scene."""
    to_geo = Transformer.from_crs(OPT_CRS, "EPSG:4326", always_xy=True)
    lon0, lat0 = to_geo.transform(400_000 - 200, 5_100_000 + 200)
    lon1, lat1 = to_geo.transform(400_000 + W * 10 + 200, 5_100_000 - H * 10 - 200)
    res = 1 / 3600
    h, w = math.ceil((lat0 - lat1) / res), math.ceil((lon1 - lon0) / res)
    transform = from_origin(lon0, lat0, res, res)
    lon, lat = _centres(transform, h, w)
    x, y = Transformer.from_crs("EPSG:4326", OPT_CRS, always_xy=True).transform(lon, lat)
    z = _plane(x, y).astype(np.float32)
    return write_raster(tmp_path / "dem_geo.tif", z, "EPSG:4326", transform)


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, {"desc": ds.descriptions, "tags": ds.tags(), "ds": ds}


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_same_grid_stack_layout_and_format(tmp_path: Path) -> None:
    opt, dem = _optical(tmp_path), _dem_same_grid(tmp_path)
    result = compile_stack(output=tmp_path / "stack.tif", optical=opt, elevation=dem)
    assert result.groups == ("optical", "dem") and result.slope_computed
    with rasterio.open(result.path) as ds:
        assert ds.descriptions == GROUP_STACK_BANDS["optical"] + GROUP_STACK_BANDS["dem"]
        assert ds.dtypes == ("float32",) * 8 and math.isnan(ds.nodata)
        assert ds.crs.to_epsg() == 32632 and ds.transform == OPT_TRANSFORM
        assert ds.block_shapes[0] == (256, 256) or ds.block_shapes[0][0] >= H
        structure = ds.tags(ns="IMAGE_STRUCTURE")
        assert structure["COMPRESSION"] == "DEFLATE" and structure["PREDICTOR"] == "3"
        tags = ds.tags()
        assert tags["GLAVIZ_VERSION"] == __version__
        inputs = json.loads(tags["GLAVIZ_INPUTS"])
        assert inputs["optical"] == str(opt.resolve()) and "Horn" in inputs["slope"]
        assert json.loads(tags["GLAVIZ_UNITS"])["slope"] == "degree"
        assert ds.units[6] == "m"
        data = ds.read()
    with rasterio.open(opt) as src:
        np.testing.assert_array_equal(data[:6], src.read())
    with rasterio.open(dem) as src:
        np.testing.assert_array_equal(data[6], src.read(1))
    expected = math.degrees(math.atan(math.hypot(DZ_DX, DZ_DY)))
    data[7, [0, 0, -1, -1], [0, -1, 0, -1]] = expected  # gdaldem's corners are one-sided
    np.testing.assert_allclose(data[7], expected, atol=1e-3)


def test_dem_in_other_crs_and_resolution_is_warped(tmp_path: Path) -> None:
    opt, dem = _optical(tmp_path), _dem_geographic(tmp_path)
    result = compile_stack(output=tmp_path / "stack.tif", optical=opt, elevation=dem)
    with rasterio.open(result.path) as ds:
        assert ds.shape == (H, W) and ds.transform == OPT_TRANSFORM
        elevation, slope = ds.read(7), ds.read(8)
    np.testing.assert_allclose(elevation, _plane(*_centres(OPT_TRANSFORM, H, W)), atol=0.5)
    # Slope computed on the lon/lat grid (metres per degree by latitude), then warped.
    expected = math.degrees(math.atan(math.hypot(DZ_DX, DZ_DY)))
    np.testing.assert_allclose(slope, expected, atol=0.2)


def test_result_does_not_depend_on_window_size(tmp_path: Path) -> None:
    big_h, big_w = 300, 560
    transform = from_origin(400_000, 5_100_000, 10, 10)
    rng = np.random.default_rng(1)
    opt = write_raster(
        tmp_path / "o.tif",
        rng.uniform(0, 1, (6, big_h, big_w)).astype(np.float32),
        OPT_CRS,
        transform,
    )
    # A coarser DEM in the neighbouring UTM zone, warped window by window.
    left, bottom, right, top = transform_bounds(
        OPT_CRS, "EPSG:32633", 400_000, 5_100_000 - big_h * 10, 400_000 + big_w * 10, 5_100_000
    )
    dem_t = from_origin(left - 500, top + 500, 30, 30)
    z = rng.normal(2000, 50, (int((top - bottom) / 30) + 40, int((right - left) / 30) + 40))
    dem = write_raster(tmp_path / "d.tif", z.astype(np.float32), "EPSG:32633", dem_t)
    a = compile_stack(output=tmp_path / "a.tif", optical=opt, elevation=dem, window_size=256)
    b = compile_stack(output=tmp_path / "b.tif", optical=opt, elevation=dem, window_size=1024)
    da, db = _read(a.path)[0], _read(b.path)[0]
    assert np.isfinite(da[6]).mean() > 0.5
    np.testing.assert_array_equal(da, db)


def test_optional_groups_in_order(tmp_path: Path) -> None:
    opt, dem = _optical(tmp_path), _dem_same_grid(tmp_path)
    two = np.full((2, H, W), 0.05, np.float32)
    sar = write_raster(tmp_path / "co.tif", two, OPT_CRS, OPT_TRANSFORM)
    cross = write_raster(tmp_path / "cross.tif", two, OPT_CRS, OPT_TRANSFORM)
    coh = write_raster(tmp_path / "coh.tif", two, OPT_CRS, OPT_TRANSFORM)
    th = write_raster(tmp_path / "th.tif", np.full((H, W), 270, np.float32), OPT_CRS, OPT_TRANSFORM)
    result = compile_stack(
        output=tmp_path / "stack.tif",
        optical=opt,
        elevation=dem,
        slope=dem,
        thermal=th,
        in_sar=coh,
        cross_pol_sar=cross,
        co_pol_sar=sar,
    )
    expected = tuple(b for names in GROUP_STACK_BANDS.values() for b in names)
    assert result.bands == expected and not result.slope_computed
    data, _, meta = _read(result.path)
    assert meta["desc"] == expected and data.shape[0] == 15
    assert np.all(data[-1] == 270)


def test_nodata_and_masks_become_nan(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    optical = rng.uniform(0, 1, (6, H, W)).astype(np.float32)
    optical[:, 5, 7] = -9999
    opt = write_raster(tmp_path / "optical.tif", optical, OPT_CRS, OPT_TRANSFORM, nodata=-9999)
    z = _plane(*_centres(OPT_TRANSFORM, H, W)).astype(np.int16)
    z[30, 40] = -32768
    dem = write_raster(tmp_path / "dem.tif", z, OPT_CRS, OPT_TRANSFORM, nodata=-32768)
    # Thermal with an internal mask instead of a nodata value.
    th_path = tmp_path / "thermal.tif"
    with rasterio.open(
        th_path, "w", driver="GTiff", width=W, height=H, count=1, dtype="float32",
        crs=OPT_CRS, transform=OPT_TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(np.full((1, H, W), 260, np.float32))
        mask = np.full((H, W), 255, np.uint8)
        mask[10:12, 20:22] = 0
        dst.write_mask(mask)
    result = compile_stack(output=tmp_path / "s.tif", optical=opt, elevation=dem, thermal=th_path)
    data = _read(result.path)[0]
    assert np.isnan(data[:6, 5, 7]).all() and np.isfinite(data[:6]).sum() == 6 * (H * W - 1)
    assert np.isnan(data[6, 30, 40]) and np.isnan(data[7, 30, 40])
    assert np.isfinite(data[7, 29:32, 39:42]).sum() == 8  # neighbours still get a slope
    assert np.isnan(data[8, 10:12, 20:22]).all() and np.isfinite(data[8]).sum() == H * W - 4


def test_partial_overlap_is_nan_outside(tmp_path: Path) -> None:
    opt = _optical(tmp_path)
    half = from_origin(400_000 + W * 5, 5_100_000, 10, 10)
    z = np.full((H, W), 1000, np.float32)
    dem = write_raster(tmp_path / "half.tif", z, OPT_CRS, half)
    data = _read(compile_stack(output=tmp_path / "s.tif", optical=opt, elevation=dem).path)[0]
    assert np.isnan(data[6, :, : W // 2 - 1]).all() and (data[6, :, W // 2 + 1 :] == 1000).all()


# --- refusals ----------------------------------------------------------------------------------


def _assert_nothing_written(tmp_path: Path, inputs: set[str]) -> None:
    assert _leftovers(tmp_path, inputs) == []


def test_non_overlap_is_refused(tmp_path: Path) -> None:
    opt = _optical(tmp_path)
    far = write_raster(
        tmp_path / "far.tif", np.ones((H, W), np.float32), OPT_CRS, from_origin(6e5, 5.3e6, 10, 10)
    )
    with pytest.raises(InputError) as err:
        compile_stack(output=tmp_path / "s.tif", optical=opt, elevation=far)
    msg = str(err.value)
    assert "do not overlap" in msg and "far.tif" in msg and "EPSG:32632" in msg
    _assert_nothing_written(tmp_path, {"optical.tif", "far.tif"})


def test_missing_crs_is_refused(tmp_path: Path) -> None:
    opt = _optical(tmp_path)
    dem = write_raster(tmp_path / "nocrs.tif", np.ones((H, W), np.float32), None, OPT_TRANSFORM)
    with pytest.raises(InputError, match=r"nocrs\.tif has no CRS"):
        compile_stack(output=tmp_path / "s.tif", optical=opt, elevation=dem)
    _assert_nothing_written(tmp_path, {"optical.tif", "nocrs.tif"})


@pytest.mark.parametrize(
    ("option", "bands", "expected"),
    [("optical", 5, 6), ("elevation", 2, 1), ("co_pol_sar", 1, 2), ("thermal", 3, 1)],
)
def test_wrong_band_counts_are_refused(
    tmp_path: Path, option: str, bands: int, expected: int
) -> None:
    paths = {"optical": _optical(tmp_path), "elevation": _dem_same_grid(tmp_path)}
    bad = write_raster(
        tmp_path / "bad.tif", np.ones((bands, H, W), np.float32), OPT_CRS, OPT_TRANSFORM
    )
    paths[option] = bad
    with pytest.raises(InputError) as err:
        compile_stack(output=tmp_path / "s.tif", **paths)
    msg = str(err.value)
    assert f"bad.tif has {bands} band(s)" in msg and f"expects {expected}" in msg
    assert "--" + option.replace("_", "-") in msg


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        compile_stack(output=tmp_path / "s.tif", optical=_optical(tmp_path), elevation="nope.tif")


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    opt, dem = _optical(tmp_path), _dem_same_grid(tmp_path)
    out = tmp_path / "stack.tif"
    out.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        compile_stack(output=out, optical=opt, elevation=dem)
    assert out.read_bytes() == b"old"
    compile_stack(output=out, optical=opt, elevation=dem, overwrite=True)
    assert _read(out)[0].shape == (8, H, W)


def test_bad_output_names(tmp_path: Path) -> None:
    opt, dem = _optical(tmp_path), _dem_same_grid(tmp_path)
    with pytest.raises(ConfigError, match=r"\.tif"):
        compile_stack(output=tmp_path / "stack.h5", optical=opt, elevation=dem)
    with pytest.raises(ConfigError, match="is the optical input"):
        compile_stack(output=opt, optical=opt, elevation=dem, overwrite=True)


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch, exc: BaseException) -> None:
    opt, dem = _optical(tmp_path), _dem_geographic(tmp_path)
    out = tmp_path / "stack.tif"
    calls = {"n": 0}
    real = stack_module.warp_window

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the first warped window, with the output already open
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(stack_module, "warp_window", flaky)
    with pytest.raises(type(exc)):
        compile_stack(output=out, optical=opt, elevation=dem)
    assert calls["n"] == 1
    _assert_nothing_written(tmp_path, {"optical.tif", "dem_geo.tif"})


def test_interrupt_after_windows_keeps_old_output(tmp_path: Path) -> None:
    opt, dem = _optical(tmp_path), _dem_same_grid(tmp_path)
    out = tmp_path / "stack.tif"
    out.write_bytes(b"previous run")

    def stop(_window) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compile_stack(output=out, optical=opt, elevation=dem, overwrite=True, on_window=stop)
    assert out.read_bytes() == b"previous run"
    _assert_nothing_written(tmp_path, {"optical.tif", "elevation.tif", "stack.tif"})


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_writes_stack_and_summary(tmp_path: Path, capsys) -> None:
    opt, dem = _optical(tmp_path), _dem_same_grid(tmp_path)
    out = tmp_path / "stack.tif"
    args = ["features", "-o", str(out), "--optical", str(opt), "--elevation", str(dem)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "stack.tif" in text and "8 bands" in text and out.exists()
    assert main(args) == 3  # exists, no --overwrite
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "--overwrite" in err
    assert main([*args, "--overwrite"]) == 0
    assert "Wrote" in capsys.readouterr().out
    assert main(["-q", *args, "--overwrite"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_date_is_tagged_inherited_and_checked(tmp_path: Path, capsys) -> None:
    """--date tags the stack (deploy records it, inventory and change read it); without it the
    optical raster's own tag is carried over; a bad date is one error line and writes nothing."""
    from glaviz.published.stack_layout import ACQUISITION_DATE_TAG

    opt, dem = _optical(tmp_path), _dem_same_grid(tmp_path)
    out = tmp_path / "stack.tif"
    args = ["features", "-o", str(out), "--optical", str(opt), "--elevation", str(dem)]
    assert main([*args, "--date", "2023-08-21"]) == 0
    assert "imagery of 2023-08-21" in capsys.readouterr().out
    assert _read(out)[2]["tags"][ACQUISITION_DATE_TAG] == "2023-08-21"
    assert main([*args, "--overwrite"]) == 0  # an undated optical raster: an undated stack
    assert ACQUISITION_DATE_TAG not in _read(out)[2]["tags"]
    with rasterio.open(opt, "r+") as ds:
        ds.update_tags(**{ACQUISITION_DATE_TAG: "2021-09-02"})
    assert main([*args, "--overwrite"]) == 0
    assert _read(out)[2]["tags"][ACQUISITION_DATE_TAG] == "2021-09-02"
    assert main([*args, "--overwrite", "--date", "2023-08-21"]) == 0  # the option wins
    assert _read(out)[2]["tags"][ACQUISITION_DATE_TAG] == "2023-08-21"
    capsys.readouterr()
    out.unlink()
    assert main([*args, "--date", "2023-02-30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "date" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    published = ["features", "-o", str(out), "--from-published", str(tmp_path / "x.pickle")]
    assert main([*published, "--date", "2023-08-21"]) == 2
    assert "published feature file is converted as it is" in capsys.readouterr().err


def test_cli_input_error_is_one_line_exit_1(tmp_path: Path, capsys) -> None:
    opt = _optical(tmp_path, bands=4)
    dem = _dem_same_grid(tmp_path)
    out = tmp_path / "stack.tif"
    rc = main(["features", "-o", str(out), "--optical", str(opt), "--elevation", str(dem)])
    assert rc == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "optical.tif has 4" in err
    assert not out.exists()


def test_cli_help_has_example_and_module_stays_light(capsys) -> None:
    assert main(["features", "--help"]) == 0
    assert "Example: glaviz features" in capsys.readouterr().out
    code = (
        "import sys\n"
        "import glaviz.cli.commands.features\n"
        "print([m for m in ('rasterio', 'numpy', 'tensorflow') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
