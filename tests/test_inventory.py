"""glaviz inventory: synthetic DEMs with exact answers, partitions, reference mode, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio import features
from rasterio.transform import from_origin
from scipy import ndimage
from shapely import union_all
from shapely.geometry import shape

from glaviz.cli.app import main
from glaviz.config.inventory import InventoryConfig
from glaviz.inventory import build_inventory
from glaviz.inventory.cleanup import fill_small_holes, merge_slivers, min_area_rule
from tests.test_inventory_data import dome_scene

CRS = "EPSG:32632"
PX = 20.0
ORIGIN = (500000.0, 5200000.0)


def write_tif(path: Path, data: np.ndarray, *, crs=CRS, px=PX, origin=ORIGIN, nodata=None):
    transform = from_origin(origin[0], origin[1], px, px)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=data.shape[0],
        width=data.shape[1],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data, 1)
    return path


def run(tmp_path: Path, mask: np.ndarray, dem: np.ndarray, **options):
    write_tif(tmp_path / "outlines.tif", mask.astype(np.uint8), nodata=255)
    write_tif(tmp_path / "dem.tif", dem.astype(np.float32))
    config = InventoryConfig(
        source=tmp_path / "outlines.tif",
        dem=tmp_path / "dem.tif",
        output=tmp_path / "glaciers.gpkg",
        overwrite=True,
        **options,
    )
    result = build_inventory(config)
    glaciers = gpd.read_file(result.output, layer="glaciers")
    return result, glaciers


@pytest.mark.parametrize("tilt", [0.0, 3.0])
def test_roof_splits_into_two_glaciers_at_the_ridge(tmp_path: Path, tilt: float) -> None:
    h, w, ridge = 80, 100, 50
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    dem = 3000 - 8.0 * np.abs(xx - ridge) - tilt * yy  # ridge along column 50
    mask = np.zeros((h, w), np.uint8)
    mask[10:70, 14:87] = 1
    result, glaciers = run(tmp_path, mask, dem)
    assert result.glaciers == 2 and len(glaciers) == 2
    divides = gpd.read_file(result.output, layer="divides")
    assert len(divides) == 1
    xs = np.asarray(divides.geometry.iloc[0].coords)[:, 0]
    ridge_x = ORIGIN[0] + (ridge + 0.5) * PX
    assert np.all(np.abs(xs - ridge_x) <= PX), xs
    # Each glacier lies on one side of the ridge.
    west, east = sorted(glaciers.geometry, key=lambda g: g.centroid.x)
    assert west.bounds[2] <= ridge_x + PX and east.bounds[0] >= ridge_x - PX


def test_tilted_plane_gives_analytic_attributes(tmp_path: Path) -> None:
    h, w = 40, 50
    r0, r1, c0, c1 = 8, 30, 10, 42
    sx, sy = 0.3, 0.4  # rise per metre towards east and towards north
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    east = (xx + 0.5) * PX
    north = -(yy + 0.5) * PX
    dem = 2000 + sx * east + sy * (north + h * PX)
    mask = np.zeros((h, w), np.uint8)
    mask[r0:r1, c0:c1] = 1
    _, glaciers = run(tmp_path, mask, dem)
    assert len(glaciers) == 1
    g = glaciers.iloc[0]
    z = dem[r0:r1, c0:c1]
    assert g.zmin_m == pytest.approx(dem[r1 - 1, c0], abs=1e-3)
    assert g.zmax_m == pytest.approx(dem[r0, c1 - 1], abs=1e-3)
    mid = (dem[r1 - 1, c0] + dem[r0, c1 - 1]) / 2  # a plane over a rectangle is symmetric
    assert g.zmean_m == pytest.approx(mid, abs=1e-3)
    assert g.zmed_m == pytest.approx(mid, abs=1e-3)
    assert z.size == (r1 - r0) * (c1 - c0)
    assert g.slope_deg == pytest.approx(math.degrees(math.atan(math.hypot(sx, sy))), abs=1e-4)
    assert g.aspect_deg == pytest.approx(math.degrees(math.atan2(-sx, -sy)) % 360, abs=1e-4)
    assert g.aspect_sec == 6  # facing south-west (216.9°)
    # Terminus: the lowest pixel, the south-west corner's centre.
    from pyproj import Transformer

    x = ORIGIN[0] + (c0 + 0.5) * PX
    y = ORIGIN[1] - (r1 - 1 + 0.5) * PX
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)
    assert g.termlon == pytest.approx(lon, abs=1e-9) and g.termlat == pytest.approx(lat, abs=1e-9)
    assert g.dem_valid_frac == 1.0
    assert not g.touches_scene_edge and not g.touches_nodata
    # Geodesic area is close to the projected one (UTM scale error < 0.1 % here).
    assert g.area_km2 == pytest.approx(z.size * PX * PX / 1e6, rel=2e-3)
    hyps = gpd.read_file(tmp_path / "glaciers.gpkg", layer="hypsometry")
    assert hyps.permille.sum() == 1000
    assert set(np.diff(sorted(hyps.band_min_m))) <= {50.0}


@st.composite
def blobs(draw):
    h, w = draw(st.integers(12, 28)), draw(st.integers(12, 28))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(h, w)), draw(st.floats(0.6, 2.5)))
    mask = noise > draw(st.floats(-0.2, 0.3)) * noise.std()
    dem = (
        2000
        + 300 * ndimage.gaussian_filter(rng.normal(size=(h, w)), 3)
        - 4.0 * np.arange(h)[:, None]
    )
    return mask, dem, draw(st.sampled_from(["dem", "reference"])), seed


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blobs())
def test_glaciers_partition_the_ice(tmp_path_factory, case) -> None:
    mask, dem, method, seed = case
    tmp = tmp_path_factory.mktemp("partition")
    options = {"min_area_km2": 0.002, "sliver_area_km2": 0.004, "sliver_compact_area_km2": 0.004}
    # The partition covers every patch of ice, small isolated ones included.
    options["drop_small_patches"] = False
    if method == "reference":
        # A reference of two halves with a few holes: some ice is new, some reference vanishes.
        ref = np.zeros(mask.shape, np.int32)
        ref[:, : mask.shape[1] // 2] = 1
        ref[:, mask.shape[1] // 2 :] = 2
        ref[np.random.default_rng(seed).random(mask.shape) < 0.1] = 0
        transform = from_origin(*ORIGIN, PX, PX)
        geoms = [shape(g) for g, v in features.shapes(ref, mask=ref > 0, transform=transform)]
        values = [int(v) for _, v in features.shapes(ref, mask=ref > 0, transform=transform)]
        frame = gpd.GeoDataFrame({"rgi_id": [f"R{v}" for v in values]}, geometry=geoms, crs=CRS)
        frame = frame.dissolve("rgi_id").reset_index()
        frame.to_file(tmp / "ref.gpkg")
        options |= {"reference": tmp / "ref.gpkg", "method": "reference"}
    _, glaciers = run(tmp, mask.astype(np.uint8), dem, **options)
    expected = mask.copy()
    fill_small_holes(expected, max_pixels=4)
    transform = from_origin(*ORIGIN, PX, PX)
    ice = union_all(
        [
            shape(g)
            for g, _ in features.shapes(
                expected.astype(np.uint8), mask=expected, transform=transform
            )
        ]
    )
    assert glaciers.glaviz_id.is_unique
    union = union_all(list(glaciers.geometry))
    assert union.symmetric_difference(ice).area == pytest.approx(0.0, abs=1e-6)
    assert sum(g.area for g in glaciers.geometry) == pytest.approx(ice.area, rel=1e-9)


def _reference_scene(tmp_path: Path):
    """Three dome complexes of several glaciers each; the reference is their true split."""
    labels, dem, transform = dome_scene(size=240, px=PX, origin=ORIGIN, seed=3)
    geoms, ids = [], []
    for g, v in features.shapes(labels, mask=labels > 0, transform=transform):
        geoms.append(shape(g))
        ids.append(int(v))
    ref = gpd.GeoDataFrame({"RGIId": [f"RGI-{v:03d}" for v in ids]}, geometry=geoms, crs=CRS)
    ref = ref.dissolve("RGIId").reset_index()
    ref["area_ref"] = ref.geometry.to_crs("EPSG:4326").apply(
        lambda g: abs(__import__("pyproj").Geod(ellps="WGS84").geometry_area_perimeter(g)[0]) / 1e6
    )
    ref.to_file(tmp_path / "rgi.gpkg")
    return labels, dem, ref


def test_reference_mode_returns_every_reference_glacier(tmp_path: Path) -> None:
    labels, dem, ref = _reference_scene(tmp_path)
    _, glaciers = run(
        tmp_path,
        (labels > 0).astype(np.uint8),
        dem,
        reference=tmp_path / "rgi.gpkg",
        reference_id="RGIId",
    )
    big = ref[ref.area_ref >= 0.05]
    assert len(big) >= 6
    got = glaciers.set_index("RGIId")
    for row in big.itertuples():
        assert row.RGIId in got.index, row.RGIId
        assert got.loc[row.RGIId, "area_km2"] == pytest.approx(row.area_ref, rel=0.02)
    assert "ref_area_ref" in glaciers.columns


@pytest.mark.parametrize("operation", ["erode", "dilate"])
def test_reference_ids_survive_two_pixels_of_change(tmp_path: Path, operation: str) -> None:
    labels, dem, ref = _reference_scene(tmp_path)
    mask = labels > 0
    op = ndimage.binary_erosion if operation == "erode" else ndimage.binary_dilation
    mask = op(mask, structure=ndimage.generate_binary_structure(2, 1), iterations=2)
    _, glaciers = run(
        tmp_path,
        mask.astype(np.uint8),
        dem,
        reference=tmp_path / "rgi.gpkg",
        reference_id="RGIId",
    )
    assert set(ref.RGIId) <= set(glaciers.RGIId.dropna())


def test_vanished_reference_glacier_and_new_ice(tmp_path: Path) -> None:
    h, w = 60, 60
    yy, _ = np.mgrid[0:h, 0:w].astype(float)
    dem = 3000 - 5.0 * yy
    mask = np.zeros((h, w), np.uint8)
    mask[5:25, 5:25] = 1  # covered by reference A
    mask[40:50, 40:55] = 1  # no reference: a new glacier
    mask[0, :] = 255  # a row of invalid data
    transform = from_origin(*ORIGIN, PX, PX)
    from shapely.geometry import box

    def cell_box(r0, r1, c0, c1):
        x0, y0 = transform * (c0, r1)
        x1, y1 = transform * (c1, r0)
        return box(x0, y0, x1, y1)

    ref = gpd.GeoDataFrame(
        {"rgi_id": ["A", "B"], "name": ["Alpha", "Beta"]},
        geometry=[cell_box(3, 27, 3, 27), cell_box(30, 38, 5, 20)],
        crs=CRS,
    )
    ref.to_file(tmp_path / "ref.gpkg")
    result, glaciers = run(tmp_path, mask, dem, reference=tmp_path / "ref.gpkg")
    vanished = gpd.read_file(result.output, layer="vanished")
    assert list(vanished.rgi_id) == ["B"]
    assert sorted(glaciers.rgi_id.fillna("new")) == ["A", "new"]
    a = glaciers[glaciers.rgi_id == "A"].iloc[0]
    assert a.ref_name == "Alpha"
    assert result.vanished == 1


def test_outdir_input_date_and_nodata_flags(tmp_path: Path) -> None:
    out = tmp_path / "scene.glaviz"
    out.mkdir()
    mask = np.zeros((30, 30), np.uint8)
    mask[10:20, 0:15] = 1
    mask[10:20, 15] = 255
    write_tif(out / "outlines.tif", mask, nodata=255)
    (out / "run.json").write_text(json.dumps({"settings": {"date": "2023-08-14"}}))
    dem = (3000 - 10.0 * np.arange(30)[:, None] * np.ones((1, 30))).astype(np.float32)
    write_tif(tmp_path / "dem.tif", dem)
    config = InventoryConfig(source=out, dem=tmp_path / "dem.tif", output=tmp_path / "g.gpkg")
    build_inventory(config)
    g = gpd.read_file(tmp_path / "g.gpkg", layer="glaciers").iloc[0]
    assert g.date == "2023-08-14"
    assert g.touches_nodata and g.touches_scene_edge
    record = json.loads((tmp_path / "g.gpkg.run.json").read_text())
    assert record["config"]["source"] == str(out) and record["glaciers"] == 1
    assert InventoryConfig(**record["config"]) == config


def _error_case(tmp_path: Path, case: str) -> list[str]:
    mask = np.zeros((30, 30), np.uint8)
    mask[5:25, 5:25] = 1
    dem = np.full((30, 30), 2500, np.float32)
    write_tif(tmp_path / "outlines.tif", mask, nodata=255, crs=None if case == "no-crs" else CRS)
    origin = (ORIGIN[0] + 1e6, ORIGIN[1]) if case == "dem" else ORIGIN
    write_tif(tmp_path / "dem.tif", dem, origin=origin, crs=None if case == "dem-no-crs" else CRS)
    args = ["inventory", str(tmp_path / "outlines.tif"), "--dem", str(tmp_path / "dem.tif")]
    if case == "reference":
        from shapely.geometry import box

        # UTM coordinates labelled as longitude/latitude: a wrong CRS label.
        ref = gpd.GeoDataFrame(
            {"rgi_id": ["A"]}, geometry=[box(500100, 5199100, 500400, 5199600)], crs="EPSG:4326"
        )
        ref.to_file(tmp_path / "ref.gpkg")
        args += ["--reference", str(tmp_path / "ref.gpkg")]
    return [*args, "-o", str(tmp_path / "out" / "glaciers.gpkg")]


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no-crs", "no CRS"),
        ("dem-no-crs", "DEM"),
        ("dem", "does not overlap"),
        ("reference", "does not overlap"),
    ],
)
def test_bad_inputs_give_one_error_and_write_nothing(tmp_path, capsys, case, words) -> None:
    from tests.helpers import error_line

    args = _error_case(tmp_path, case)
    assert main(args) == 1
    line = error_line(capsys)
    assert words in line
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path, capsys) -> None:
    args = _error_case(tmp_path, "ok")
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 3
    assert "--overwrite" in capsys.readouterr().err


def test_merge_slivers_never_joins_two_protected_labels() -> None:
    labels = np.array([[1, 1, 2, 3, 3], [1, 1, 2, 3, 3]], dtype=np.int32)
    merged, mapping = merge_slivers(
        labels, is_sliver=min_area_rule(5.0), pixel_area=1.0, pixel_length=1.0, protected=[1, 2]
    )
    # 2 is protected: it stays although small; 3 (4 px) joins 2, its only neighbour.
    assert mapping[1] != mapping[2] and mapping[3] == mapping[2]
    assert merged.max() == 2


def test_fill_small_holes_keeps_nunataks_and_unknown_holes() -> None:
    ice = np.ones((12, 12), bool)
    ice[2, 2] = False  # noise hole: filled
    ice[5:9, 5:9] = False  # 16 px nunatak: kept
    ice[2, 9] = False  # hole of invalid data: kept
    keep = np.zeros_like(ice)
    keep[2, 9] = True
    assert fill_small_holes(ice, max_pixels=4, keep=keep) == 1
    assert ice[2, 2] and not ice[6, 6] and not ice[2, 9]


def test_geographic_outlines_work_in_utm(tmp_path: Path) -> None:
    """Outlines in longitude/latitude are warped to their UTM zone; the DEM stays in its own CRS."""
    mask = np.zeros((60, 80), np.uint8)
    mask[15:45, 20:60] = 1
    px_deg = 0.0002  # about 22 m × 15 m at 46° N
    write_tif(tmp_path / "outlines.tif", mask, crs="EPSG:4326", px=px_deg, origin=(9.0, 46.95))
    yy, _ = np.mgrid[0:200, 0:200].astype(float)
    write_tif(
        tmp_path / "dem.tif",
        (3000 - 2.0 * yy).astype(np.float32),
        px=10.0,
        origin=(499500.0, 5200500.0),
    )
    config = InventoryConfig(
        source=tmp_path / "outlines.tif", dem=tmp_path / "dem.tif", output=tmp_path / "g.gpkg"
    )
    result = build_inventory(config)
    glaciers = gpd.read_file(result.output, layer="glaciers")
    assert len(glaciers) == 1 and glaciers.crs.to_epsg() == 32632
    from pyproj import Geod
    from shapely.geometry import box

    expected = (
        abs(
            Geod(ellps="WGS84").geometry_area_perimeter(
                box(9.0 + 20 * px_deg, 46.95 - 45 * px_deg, 9.0 + 60 * px_deg, 46.95 - 15 * px_deg)
            )[0]
        )
        / 1e6
    )
    assert glaciers.area_km2.iloc[0] == pytest.approx(expected, rel=0.03)
    assert 9.0 < glaciers.cenlon.iloc[0] < 9.016 and 46.94 < glaciers.cenlat.iloc[0] < 46.95
    assert glaciers.dem_valid_frac.iloc[0] == 1.0


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import pyogrio

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pyogrio, "write_dataframe", broken)  # the hypsometry table
    mask = np.zeros((30, 30), np.uint8)
    mask[5:25, 5:25] = 1
    dem = (3000 - 5.0 * np.arange(30)[:, None] * np.ones((1, 30))).astype(np.float32)
    out = tmp_path / "out"
    out.mkdir()
    write_tif(out / "outlines.tif", mask, nodata=255)
    write_tif(out / "dem.tif", dem)
    config = InventoryConfig(
        source=out / "outlines.tif", dem=out / "dem.tif", output=out / "g.gpkg"
    )
    with pytest.raises(OSError, match="disk full"):
        build_inventory(config)
    assert sorted(p.name for p in out.iterdir()) == ["dem.tif", "outlines.tif"]


@pytest.mark.parametrize(
    ("aspect", "sector"),
    [(0.0, 1), (22.4, 1), (22.5, 2), (180.0, 5), (337.4, 8), (337.5, 1), (359.9, 1), (math.nan, 0)],
)
def test_aspect_sectors_follow_rgi(aspect: float, sector: int) -> None:
    from glaviz.inventory.attributes import aspect_sector

    assert aspect_sector(aspect) == sector


def test_hypsometry_rounds_to_exactly_one_thousand() -> None:
    from glaviz.inventory.attributes import hypsometry

    z = np.array([10.0, 60.0, 110.0])  # three 50 m bands, a third each
    assert hypsometry(z, 50.0) == [(0.0, 334), (50.0, 333), (100.0, 333)]
    assert hypsometry(np.array([np.nan]), 50.0) == []


def test_isolated_patches_below_min_area_are_dropped_by_default(tmp_path: Path) -> None:
    h, w = 60, 80
    dem = 3000 - 4.0 * np.mgrid[0:h, 0:w][0].astype(float)
    mask = np.zeros((h, w), np.uint8)
    mask[10:40, 10:50] = 1  # one glacier far above the minimum area
    for r, c in ((50, 5), (55, 70), (5, 75)):  # three one-pixel patches of classifier noise
        mask[r, c] = 1
    pixel_km2 = PX * PX / 1e6
    options = {"min_area_km2": 4 * pixel_km2}
    (tmp_path / "default").mkdir()
    (tmp_path / "kept").mkdir()
    result, glaciers = run(tmp_path / "default", mask, dem, **options)
    assert result.glaciers == len(glaciers) == 1 and result.dropped == 3
    assert "3 patches below --min-area dropped" in result.summary()
    record = json.loads(result.record.read_text())
    assert record["dropped_patches"]["count"] == 3
    assert math.isclose(record["dropped_patches"]["area_km2"], 3 * pixel_km2)
    kept, glaciers = run(tmp_path / "kept", mask, dem, drop_small_patches=False, **options)
    assert kept.glaciers == len(glaciers) == 4 and kept.dropped == 0


def test_an_empty_reference_is_named_as_empty_not_as_a_crs_problem(tmp_path: Path) -> None:
    from glaviz.errors import InputError

    empty = tmp_path / "rgi.gpkg"
    gpd.GeoDataFrame({"rgi_id": []}, geometry=[], crs=CRS).to_file(empty)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 1
    dem = 3000 - 4.0 * np.mgrid[0:40, 0:40][0].astype(float)
    with pytest.raises(InputError, match="holds no glacier outlines") as error:
        run(tmp_path, mask, dem, reference=empty)
    assert "CRS" not in str(error.value) and "overlap" not in str(error.value)
