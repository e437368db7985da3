"""Horn slope: analytic planes, a loop reference, windowed streaming, and ``gdaldem slope``."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.transform import from_origin

from glaviz.features.slope import (
    horn_slope,
    metres_per_degree,
    pixel_size_metres,
    slope_degrees,
    write_slope,
)
from tests.helpers import write_raster

WGS84 = {"a": 6378137.0, "inverse_flattening": 298.257223563}


def _terrain(h: int, w: int, seed: int = 0, relief: float = 400.0) -> np.ndarray:
    """Smooth mountains with a little noise: slopes from flat to very steep."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    z = 2000.0 + relief * np.sin(6 * x + 1.3) * np.cos(5 * y - 0.4)
    for _ in range(6):
        cx, cy, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
        z += rng.uniform(-1, 1) * relief * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return (z + rng.normal(0, 1.0, z.shape)).astype(np.float32)


def _loop_reference(z: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Horn's formula written cell by cell (interior only): an independent check."""
    h, w = z.shape
    out = np.full((h, w), np.nan)
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            n = z[r - 1 : r + 2, c - 1 : c + 2].astype(np.float64)
            gx = (n[0, 2] + 2 * n[1, 2] + n[2, 2] - n[0, 0] - 2 * n[1, 0] - n[2, 0]) / (8 * dx[r])
            gy = (n[2, 0] + 2 * n[2, 1] + n[2, 2] - n[0, 0] - 2 * n[0, 1] - n[0, 2]) / (8 * dy[r])
            out[r, c] = math.degrees(math.atan(math.sqrt(gx * gx + gy * gy)))
    return out


def _agreement(a: np.ndarray, b: np.ndarray, border: int = 2) -> tuple[float, float]:
    h, w = a.shape
    d = np.abs(a - b)[border : h - border, border : w - border]
    return float(np.nanmean(d)), float(np.nanpercentile(d, 99))


def test_plane_has_exact_slope_including_edges() -> None:
    y, x = np.mgrid[0:40, 0:50].astype(np.float64)
    dz_dx, dz_dy = 0.5, -0.2  # per metre
    z = 100 + dz_dx * x * 30 + dz_dy * y * 20
    s = slope_degrees(z, xres=30.0, yres=20.0)
    expected = math.degrees(math.atan(math.hypot(dz_dx, dz_dy)))
    s[[0, 0, -1, -1], [0, -1, 0, -1]] = expected  # GDAL's corners are one-sided
    np.testing.assert_allclose(s, expected, atol=1e-4)


def test_matches_loop_reference_with_per_row_spacing() -> None:
    z = _terrain(40, 48, seed=1)
    dx = np.linspace(20.0, 35.0, 40)  # metres per pixel shrinking with latitude, row by row
    dy = np.full(40, 30.8)
    ours = slope_degrees(z, xres=dx, yres=dy)
    ref = _loop_reference(z, dx, dy)
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(ours[inner], ref[inner], atol=1e-4)
    mean, p99 = _agreement(ours, ref)
    assert mean < 0.1 and p99 < 0.5


def test_nodata_centre_is_nan_and_neighbours_use_centre() -> None:
    z = _terrain(20, 20, seed=2).astype(np.float64)
    z[10, 10] = np.nan
    s = slope_degrees(z, xres=10.0, yres=10.0)
    assert np.isnan(s[10, 10])
    assert np.isfinite(np.delete(s.ravel(), 10 * 20 + 10)).all()


def test_metres_per_degree_against_geodesic() -> None:
    geod = Geod(ellps="WGS84")
    for lat in (0.0, 30.0, 61.0, 78.0):
        per_lon, per_lat = metres_per_degree(np.array([lat]), **WGS84)
        _, _, east = geod.inv(10.0, lat, 10.001, lat)
        _, _, north = geod.inv(10.0, lat - 0.0005, 10.0, lat + 0.0005)
        assert per_lon[0] * 0.001 == pytest.approx(east, rel=1e-6)
        assert per_lat[0] * 0.001 == pytest.approx(north, rel=1e-6)


def test_pixel_size_projected_feet_and_geographic_rows() -> None:
    xr, yr = pixel_size_metres(CRS.from_epsg(2277), from_origin(0, 0, 10, 10), np.arange(3))
    assert xr == pytest.approx(3.048006, rel=1e-5) and yr == pytest.approx(xr)  # US survey feet
    xr, yr = pixel_size_metres(
        CRS.from_epsg(4326), from_origin(10, 80, 0.01, 0.01), np.arange(0, 3000, 1000)
    )
    assert np.all(np.diff(xr) > 0)  # southwards, a degree of longitude gets longer


def test_plane_on_geographic_grid_at_61_degrees(tmp_path: Path) -> None:
    """A plane defined in local metres must keep its slope on a lon/lat grid, every row."""
    h, w, res = 120, 90, 1 / 3600
    lat = 61.5 - (np.arange(h) + 0.5) * res
    per_lon, per_lat = metres_per_degree(lat, **WGS84)
    cols = (np.arange(w) + 0.5) * res
    # East-west metres along each row, north-south metres from the top: a tilted plane.
    east = cols[None, :] * per_lon[:, None]
    north = np.cumsum(np.r_[0, res * 0.5 * (per_lat[1:] + per_lat[:-1])])[:, None]
    z = (1500 + 0.3 * east - 0.4 * north).astype(np.float64)
    path = write_raster(tmp_path / "geo.tif", z, "EPSG:4326", from_origin(7.0, 61.5, res, res))
    with rasterio.open(path) as src:
        write_slope(src, path=tmp_path / "slope.tif", window_size=256)
    with rasterio.open(tmp_path / "slope.tif") as ds:
        s = ds.read(1)
    expected = math.degrees(math.atan(math.hypot(0.3, 0.4)))
    np.testing.assert_allclose(s[1:-1, 1:-1], expected, atol=0.01)


def test_windowed_stream_equals_whole_array(tmp_path: Path) -> None:
    z = _terrain(300, 520, seed=3)
    z[50:53, 260:270] = -9999  # a nodata hole across a window seam
    path = write_raster(tmp_path / "dem.tif", z, "EPSG:32633", from_origin(5e5, 7e6, 25, 25), -9999)
    with rasterio.open(path) as src:
        write_slope(src, path=tmp_path / "s.tif", window_size=256)
    with rasterio.open(tmp_path / "s.tif") as ds:
        streamed = ds.read(1)
        assert ds.block_shapes[0] == (256, 256)
    whole = slope_degrees(np.where(z == -9999, np.nan, z), xres=25.0, yres=25.0)
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(whole))
    np.testing.assert_allclose(streamed, whole, atol=1e-5, equal_nan=True)


def test_crop_window_uses_real_neighbours(tmp_path: Path) -> None:
    from rasterio.windows import Window

    z = _terrain(80, 80, seed=4)
    path = write_raster(tmp_path / "dem.tif", z, "EPSG:32633", from_origin(5e5, 7e6, 25, 25))
    with rasterio.open(path) as src:
        write_slope(src, path=tmp_path / "s.tif", window=Window(10, 20, 30, 40))
    with rasterio.open(tmp_path / "s.tif") as ds:
        cropped = ds.read(1)
        assert ds.transform == from_origin(5e5 + 250, 7e6 - 500, 25, 25)
    whole = slope_degrees(z, xres=25.0, yres=25.0)
    np.testing.assert_allclose(cropped, whole[20:60, 10:40], atol=1e-5)


# --- agreement with GDAL ---------------------------------------------------------------------

gdaldem = pytest.mark.skipif(shutil.which("gdaldem") is None, reason="gdaldem (gdal-bin) missing")


def _gdaldem(src: Path, dst: Path, *extra: str) -> np.ndarray:
    cmd = ["gdaldem", "slope", "-q", "-compute_edges", *extra, str(src), str(dst)]
    subprocess.run(cmd, check=True, capture_output=True)
    with rasterio.open(dst) as ds:
        return ds.read(1)


def _ours(src: Path, tmp_path: Path) -> np.ndarray:
    with rasterio.open(src) as ds:
        write_slope(ds, path=tmp_path / "ours.tif", window_size=256)
    with rasterio.open(tmp_path / "ours.tif") as ds:
        return ds.read(1)


@gdaldem
def test_gdaldem_projected(tmp_path: Path) -> None:
    z = _terrain(200, 180, seed=5)
    src = write_raster(tmp_path / "dem.tif", z, "EPSG:32632", from_origin(4e5, 51e5, 30, 30))
    mean, p99 = _agreement(_ours(src, tmp_path), _gdaldem(src, tmp_path / "gd.tif"))
    assert mean < 0.1 and p99 < 0.5
    # With -compute_edges the edges agree too.
    mean, p99 = _agreement(_ours(src, tmp_path), _gdaldem(src, tmp_path / "gd.tif"), border=0)
    assert mean < 0.1 and p99 < 0.5


@gdaldem
@pytest.mark.parametrize("lat0", [0.1, 61.5])
def test_gdaldem_geographic(tmp_path: Path, lat0: float) -> None:
    """gdaldem (before GDAL 3.11) has one global scale, right only where a degree of longitude
    and of latitude have the same length. So GDAL gets the same DEM on a local metric grid
    whose pixel sizes are geodesic distances at the scene centre (pyproj, independent of
    glaviz); near the equator, the classic ``-s 111120`` is checked as well."""
    h, w, res = 200, 160, 1 / 3600
    z = _terrain(h, w, seed=6, relief=150.0)
    transform = from_origin(8.0, lat0, res, res)
    src = write_raster(tmp_path / "geo.tif", z, "EPSG:4326", transform)
    ours = _ours(src, tmp_path)

    geod = Geod(ellps="WGS84")
    mid = lat0 - h * res / 2
    _, _, dx = geod.inv(8.0, mid, 8.0 + res, mid)
    _, _, dy = geod.inv(8.0, mid - res / 2, 8.0, mid + res / 2)
    metric = write_raster(tmp_path / "metric.tif", z, None, from_origin(0, 0, dx, dy))
    mean, p99 = _agreement(ours, _gdaldem(metric, tmp_path / "gd_metric.tif"))
    assert mean < 0.1 and p99 < 0.5
    if lat0 < 1:
        mean, p99 = _agreement(ours, _gdaldem(src, tmp_path / "gd_s.tif", "-s", "111120"))
        assert mean < 0.1 and p99 < 0.5


def test_horn_slope_rejects_blocks_without_halo() -> None:
    with pytest.raises(ValueError, match="halo"):
        horn_slope(np.zeros((2, 5)), xres=1.0, yres=1.0)
