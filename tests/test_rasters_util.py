"""glaviz.util.rasters: the one home of grid comparison, overlap, CRS names and raster opening.

Every test writes small seeded rasters with real CRSs into tmp_path and reads them back, so the
CRS and transform objects are the ones rasterio hands the features, evaluation and inventory
code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window

from glaviz.errors import InputError
from glaviz.inventory.grid import Grid  # a grid that is no dataset: same_grid accepts it
from glaviz.util.rasters import (
    GRID_TOLERANCE,
    bounds_overlap,
    count_windows,
    crs_name,
    format_bounds,
    intersects,
    linear_unit,
    open_raster,
    read_as_float,
    reproject_bounds,
    require_crs,
    require_north_up,
    same_grid,
    warped_view,
    windows,
)

UTM32 = "EPSG:32632"
#: Upper-left corner of the UTM test grids: a UTM northing of seven digits, as in the Alps.
ORIGIN = (400_000.0, 5_100_000.0)
#: An orthographic view of the Alps: its corners lie off the globe, so its bounds cannot be
#: expressed in any other CRS, while small bounds near its centre can be expressed in it.
ORTHO = "+proj=ortho +lat_0=46 +lon_0=9 +ellps=WGS84 +units=m"


def write(
    path: Path,
    *,
    crs: Any = UTM32,
    transform: Affine | None = None,
    shape: tuple[int, int] = (6, 8),
    nodata: float | None = None,
    seed: int = 0,
) -> Path:
    """A one-band float32 GeoTIFF of seeded random values."""
    data = np.random.default_rng(seed).random(shape).astype(np.float32)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=shape[0],
        width=shape[1],
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform if transform is not None else from_origin(*ORIGIN, 10, 10),
        nodata=nodata,
    ) as dst:
        dst.write(data, 1)
    return path


def shifted(transform: Affine, dx: float) -> Affine:
    """``transform`` with its origin moved ``dx`` CRS units east."""
    return Affine(transform.a, transform.b, transform.c + dx, transform.d, transform.e, transform.f)


# ----------------------------------------------------------------------------- same_grid


def test_a_raster_is_on_its_own_grid_and_a_copy_is_too(tmp_path: Path) -> None:
    a, b = write(tmp_path / "a.tif", seed=1), write(tmp_path / "b.tif", seed=2)
    with rasterio.open(a) as ra, rasterio.open(b) as rb:
        assert same_grid(ra, ra) and same_grid(ra, rb) and same_grid(rb, ra)
        assert same_grid(ra, Grid(CRS.from_string(UTM32), ra.transform, ra.width, ra.height))


@pytest.mark.parametrize(
    ("pixel", "shift_px", "same"),
    [
        (10.0, 0.5e-9, True),  # rounding of a metre grid
        (10.0, 1e-6, False),  # a millionth of a pixel is a different grid
        (10.0, 0.5, False),
    ],
)
def test_same_grid_tolerance_is_a_billionth_of_a_pixel(
    tmp_path: Path, pixel: float, shift_px: float, same: bool
) -> None:
    base = from_origin(*ORIGIN, pixel, pixel)
    a = write(tmp_path / "a.tif", transform=base)
    b = write(tmp_path / "b.tif", transform=shifted(base, shift_px * pixel))
    with rasterio.open(a) as ra, rasterio.open(b) as rb:
        assert same_grid(ra, rb) is same
        assert same_grid(rb, ra) is same  # symmetric


def test_tolerance_follows_the_pixel_not_the_crs_unit(tmp_path: Path) -> None:
    """The same absolute difference is rounding on a grid of 10 m pixels and a real offset on a
    grid of 1e-4 degree pixels."""
    offset = 0.5 * GRID_TOLERANCE * 10.0  # half the tolerance of the metre grid, in CRS units
    metres = from_origin(*ORIGIN, 10.0, 10.0)
    degrees = from_origin(9.0, 46.0, 1e-4, 1e-4)
    m1 = write(tmp_path / "m1.tif", transform=metres)
    m2 = write(tmp_path / "m2.tif", transform=shifted(metres, offset))
    d1 = write(tmp_path / "d1.tif", crs="EPSG:4326", transform=degrees)
    d2 = write(tmp_path / "d2.tif", crs="EPSG:4326", transform=shifted(degrees, offset))
    with rasterio.open(m1) as a, rasterio.open(m2) as b:
        assert same_grid(a, b)
    with rasterio.open(d1) as a, rasterio.open(d2) as b:
        assert not same_grid(a, b)


def test_pixel_sizes_are_held_to_the_same_tolerance(tmp_path: Path) -> None:
    """A pixel width 5e-9 m off (half the tolerance at 10 m) is rounding; 5e-6 m is another
    grid, whose last column would sit visibly elsewhere on a wide scene."""
    base = from_origin(*ORIGIN, 10.0, 10.0)
    near = Affine(10.0 + 5e-9, 0, ORIGIN[0], 0, -10.0, ORIGIN[1])
    far = Affine(10.0 + 5e-6, 0, ORIGIN[0], 0, -10.0, ORIGIN[1])
    a = write(tmp_path / "a.tif", transform=base)
    b = write(tmp_path / "b.tif", transform=near)
    c = write(tmp_path / "c.tif", transform=far)
    with rasterio.open(a) as ra, rasterio.open(b) as rb, rasterio.open(c) as rc:
        assert same_grid(ra, rb) and not same_grid(ra, rc)


def test_crs_and_size_must_match_exactly(tmp_path: Path) -> None:
    a = write(tmp_path / "a.tif")
    other_crs = write(tmp_path / "b.tif", crs="EPSG:32633")
    other_size = write(tmp_path / "c.tif", shape=(6, 9))
    with rasterio.open(a) as ra, rasterio.open(other_crs) as rb, rasterio.open(other_size) as rc:
        assert not same_grid(ra, rb) and not same_grid(ra, rc)


# ----------------------------------------------------------------------------- bounds


def test_intersects_needs_a_shared_area() -> None:
    a = (0.0, 0.0, 10.0, 10.0)
    assert intersects(a, (5.0, 5.0, 15.0, 15.0))
    assert intersects(a, np.array([2.0, 2.0, 3.0, 3.0]))  # inside, numpy bounds
    assert not intersects(a, (10.0, 0.0, 20.0, 10.0))  # touching edges share no area
    assert not intersects(a, (11.0, 11.0, 12.0, 12.0))
    assert intersects(a, (5.0, 5.0, 15.0, 15.0)) is True  # a plain bool, never numpy's


def test_rasters_in_two_crss_overlap_where_they_share_ground(tmp_path: Path) -> None:
    utm = write(tmp_path / "utm.tif")
    with rasterio.open(utm) as src:
        in_wgs84 = reproject_bounds(src.bounds, src.crs, "EPSG:4326")
        assert in_wgs84 is not None
        lon0, lat0, lon1, lat1 = in_wgs84
        assert 7.70 < lon0 < lon1 < 7.72 and 46.04 < lat0 < lat1 < 46.05
        geo = write(
            tmp_path / "geo.tif",
            crs="EPSG:4326",
            transform=from_origin(lon0, lat1, (lon1 - lon0) / 8, (lat1 - lat0) / 6),
        )
        far = write(tmp_path / "far.tif", crs="EPSG:32633", transform=from_origin(1e5, 1e6, 10, 10))
        with rasterio.open(geo) as g, rasterio.open(far) as f:
            assert bounds_overlap(g.bounds, g.crs, src.bounds, src.crs)
            assert bounds_overlap(src.bounds, src.crs, g.bounds, g.crs)
            assert not bounds_overlap(f.bounds, f.crs, src.bounds, src.crs)
            assert not same_grid(g, src)


def test_bounds_outside_a_crs_are_compared_in_the_other_one(tmp_path: Path) -> None:
    """A scene whose corners lie off the globe cannot be expressed in UTM; the overlap is then
    decided in its own CRS, where the UTM scene can be expressed."""
    ortho = CRS.from_proj4(ORTHO)
    utm = write(tmp_path / "utm.tif")
    disc = (-7e6, -7e6, 7e6, 7e6)
    corner = (-7e6, -7e6, -6.5e6, -6.5e6)
    with rasterio.open(utm) as src:
        assert reproject_bounds(disc, ortho, src.crs) is None
        assert reproject_bounds(src.bounds, src.crs, ortho) is not None
        assert bounds_overlap(disc, ortho, src.bounds, src.crs)
        assert not bounds_overlap(corner, ortho, src.bounds, src.crs)


def test_impossible_bounds_are_none_not_infinite() -> None:
    assert reproject_bounds((100.0, 100.0, 101.0, 101.0), "EPSG:4326", UTM32) is None


def test_bounds_print_metre_precision() -> None:
    assert format_bounds((400000, 5099600.5, 400500, 5100000)) == (
        "(400000, 5099600.5, 400500, 5100000)"
    )
    assert format_bounds(np.array([7.707467964, 46.04266626])) == "(7.707467964, 46.04266626)"


# ----------------------------------------------------------------------------- CRS names


def test_crs_names_are_epsg_codes_when_there_is_one(tmp_path: Path) -> None:
    laea = "+proj=laea +lat_0=50 +lon_0=7 +ellps=GRS80 +units=m"
    paths = {
        "utm": write(tmp_path / "utm.tif"),
        "geo": write(tmp_path / "geo.tif", crs="EPSG:4326", transform=from_origin(9, 46, 1, 1)),
        "laea": write(tmp_path / "laea.tif", crs=CRS.from_proj4(laea)),
    }
    names = {}
    for key, path in paths.items():
        with rasterio.open(path) as src:
            names[key] = crs_name(src.crs)
    assert names["utm"] == UTM32 and names["geo"] == "EPSG:4326"
    assert names["laea"].startswith("PROJCS[") and "Lambert_Azimuthal_Equal_Area" in names["laea"]
    assert crs_name(None) == "no CRS"


def test_linear_units(tmp_path: Path) -> None:
    assert linear_unit(CRS.from_string(UTM32)) == ("metre", 1.0)
    feet = linear_unit(CRS.from_epsg(2229))  # NAD83 / California zone 5 (US survey foot)
    assert feet is not None and feet[1] == pytest.approx(1200 / 3937)
    assert linear_unit(CRS.from_epsg(4326)) is None


# ----------------------------------------------------------------------------- opening


def test_open_raster_refuses_with_the_callers_error(tmp_path: Path) -> None:
    missing, broken = tmp_path / "nope.tif", tmp_path / "broken.tif"
    broken.write_text("not a GeoTIFF")
    with pytest.raises(InputError, match=r"^DEM .*nope\.tif does not exist; check the --dem path$"):
        open_raster(missing, "DEM", missing="check the --dem path")
    with pytest.raises(InputError, match=r"^cannot read DEM .*broken\.tif: .*; try again$"):
        open_raster(broken, "DEM", missing="check the --dem path", hint="; try again")
    with pytest.raises(InputError, match=r"^cannot read outlines .*nope\.tif"):
        open_raster(missing, "outlines")  # existence already checked by caller
    with open_raster(write(tmp_path / "ok.tif"), "DEM") as src:
        assert src.count == 1


def test_rasters_without_crs_or_rotated_are_refused(tmp_path: Path) -> None:
    no_crs = write(tmp_path / "nocrs.tif", crs=None)
    rotated = write(
        tmp_path / "rot.tif", transform=from_origin(*ORIGIN, 10, 10) * Affine.rotation(20)
    )
    fine = write(tmp_path / "fine.tif")
    with (
        rasterio.open(no_crs) as src,
        pytest.raises(InputError, match=r"DEM .*nocrs\.tif has no CRS.*gdal_edit\.py -a_srs"),
    ):
        require_crs(src, no_crs, "DEM")
    with rasterio.open(rotated) as src:
        require_crs(src, rotated, "DEM")
        with pytest.raises(InputError, match=r"rot\.tif has a rotated geotransform"):
            require_north_up(src, rotated, "DEM")
    with rasterio.open(fine) as src:
        require_crs(src, fine, "DEM")
        require_north_up(src, fine, "DEM")


# ----------------------------------------------------------------------------- reading


def test_read_as_float_turns_nodata_into_nan(tmp_path: Path) -> None:
    path = tmp_path / "dem.tif"
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    data[1, 2] = -9999
    profile = {"driver": "GTiff", "height": 3, "width": 4, "count": 1, "dtype": "int16"}
    transform = from_origin(*ORIGIN, 10, 10)
    with rasterio.open(path, "w", **profile, crs=UTM32, transform=transform, nodata=-9999) as dst:
        dst.write(data, 1)
    with rasterio.open(path) as src:
        out = read_as_float(src, 1, Window(0, 0, 4, 3))
    assert out.dtype == np.float32 and np.isnan(out[1, 2])
    assert np.array_equal(np.isnan(out), data == -9999)
    assert np.array_equal(out[data != -9999], data[data != -9999].astype(np.float32))


def test_warped_view_onto_the_same_grid_reads_the_same_values(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tif", seed=4)
    with rasterio.open(path) as src, warped_view(src, like=src) as vrt:
        window = Window(0, 0, src.width, src.height)
        assert np.allclose(read_as_float(vrt, 1, window), read_as_float(src, 1, window))


def test_warped_view_fills_what_the_source_misses_with_nan(tmp_path: Path) -> None:
    left = write(tmp_path / "left.tif", seed=5)
    like = Grid(CRS.from_string(UTM32), shifted(from_origin(*ORIGIN, 10, 10), 40.0), 8, 6)
    with rasterio.open(left) as src, warped_view(src, like=like) as vrt:
        out = read_as_float(vrt, 1, Window(0, 0, 8, 6))
    assert np.isnan(out[:, 5:]).all() and np.isfinite(out[:, :3]).all()


@pytest.mark.parametrize("size", [1, 2, 3, 256])
def test_windows_cover_each_pixel_once(size: int) -> None:
    crop = Window(5, 7, 11, 9)
    cover = np.zeros((30, 30), int)
    got = list(windows(crop, size))
    for w in got:
        cover[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert len(got) == count_windows(crop, size)
    assert (cover[7:16, 5:16] == 1).all() and cover.sum() == 11 * 9
