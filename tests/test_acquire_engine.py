"""The acquisition engine piece by piece, on tiny granules written by tests/s2_granules.py.

Exact values throughout: reflectance against hand-computed ``(DN + offset) / 10000`` for both
processing baselines, cloud fractions inside the AOI against the constructed masks, the ranking
order, the two-tile mosaic and the per-pixel median.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from glaviz.acquire.clouds import CloudMask, aoi_cloud, mask_kind, parse_gml_clouds
from glaviz.acquire.composite import (
    CLEAR,
    CLOUD,
    NO_DATA,
    GranuleFiles,
    GranuleReader,
    median,
    mosaic,
)
from glaviz.acquire.granule import Granule
from glaviz.acquire.grid import Grid, target_grid
from glaviz.acquire.metadata import parse_radiometry, read_radiometry
from glaviz.acquire.select import Candidate, by_day, choose, rank
from glaviz.acquire.toa import to_reflectance
from glaviz.errors import ConfigError, InputError
from tests.s2_granules import GranuleSpec, dn_10m, dn_20m, mtd_xml, write_granule

EPSG = 32632
LEFT, TOP = 399960.0, 5300040.0
SIZE = 120  # 1.2 km at 10 m


def spec(item: str, **kw: object) -> GranuleSpec:
    base = {
        "item_id": item,
        "tile": "32TMS",
        "epsg": EPSG,
        "left": LEFT,
        "top": TOP,
        "size": SIZE,
        "sensed": datetime(2023, 8, 15, 10, 30),
    }
    return GranuleSpec(**{**base, **kw})  # type: ignore[arg-type]


def granule_grid(size: int = SIZE, res: float = 10.0, left: float = LEFT) -> Grid:
    return Grid(crs=f"EPSG:{EPSG}", resolution=res, left=left, top=TOP,
                width=round(size * 10 / res), height=round(SIZE * 10 / res))  # fmt: skip


def read_all(readers: list[GranuleReader], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    from rasterio.windows import Window

    return mosaic(readers, Window(0, 0, grid.width, grid.height))


def files_of(granule: Granule) -> GranuleFiles:

    return GranuleFiles(
        granule=granule,
        bands={b: Path(h) for b, h in granule.bands.items()},
        radiometry=read_radiometry(Path(granule.metadata)),
        cloud_mask=Path(granule.cloud_mask),
    )


# ------------------------------------------------------------------------------ radiometry


def test_toa_by_hand_for_both_baselines() -> None:
    dn = np.array([0, 1, 1000, 2500, 11000], dtype=np.uint16)
    new = to_reflectance(dn, quantification=10000, offset=-1000)
    old = to_reflectance(dn, quantification=10000, offset=0)
    assert new.dtype == np.float32
    # (DN - 1000) / 10000 from baseline 04.00; DN 0 is no data, never -0.1.
    np.testing.assert_array_equal(
        new, np.array([np.nan, -0.0999, 0.0, 0.15, 1.0], dtype=np.float32)
    )
    np.testing.assert_array_equal(old, np.array([np.nan, 0.0001, 0.1, 0.25, 1.1], dtype=np.float32))


def test_metadata_of_both_baselines() -> None:
    new = parse_radiometry(mtd_xml("05.09"), source="new")
    old = parse_radiometry(mtd_xml("03.01"), source="old")
    assert (new.baseline, new.quantification, new.kind) == ("05.09", 10000.0, "TOA")
    assert new.offset("B02") == -1000.0 and new.offset("B12") == -1000.0
    assert (old.baseline, old.offset("B02"), old.offset("B11")) == ("03.01", 0.0, 0.0)


def test_metadata_without_offset_of_a_new_baseline_is_refused() -> None:
    text = mtd_xml("03.01").replace("03.01", "04.00")
    with pytest.raises(InputError, match=r"04\.00 but lists no RADIO_ADD_OFFSET"):
        parse_radiometry(text, source="MTD_MSIL1C.xml")
    with pytest.raises(InputError, match="not readable XML"):
        parse_radiometry("<broken", source="x.xml")


# ------------------------------------------------------------------------------------ grid


def test_grid_in_the_utm_zone_of_the_centre_with_whole_metre_corners() -> None:
    assert target_grid((-70.01, -33.01, -70.0, -33.0)).crs == "EPSG:32719"
    bbox = (8.0012, 46.5003, 8.0391, 46.5207)
    grid = target_grid(bbox)
    assert grid.crs == "EPSG:32632" and grid.resolution == 10
    left, bottom, right, top = grid.bounds
    assert all(v % 10 == 0 for v in (left, bottom, right, top))
    from rasterio.warp import transform_bounds

    w, s, e, n = transform_bounds("EPSG:4326", "EPSG:32632", *bbox, densify_pts=21)
    assert left <= w and bottom <= s and right >= e and top >= n
    assert right - e < 10 and top - n < 10
    assert target_grid(bbox, epsg=32633).crs == "EPSG:32633"
    with pytest.raises(ConfigError, match="not projected"):
        target_grid(bbox, epsg=4326)


# ---------------------------------------------------------------------------------- clouds


@pytest.mark.parametrize("baseline", ["05.09", "03.01"])
def test_cloud_fraction_inside_the_aoi(tmp_path: Path, baseline: str) -> None:
    """A cloud box of 60 × 60 px in a 120 × 120 px granule: a quarter of the AOI, from the
    raster mask (04.00 on) and from the GML (before); the snow class is not cloud."""
    from contextlib import ExitStack

    granule = write_granule(tmp_path, spec("A", baseline=baseline, cloud=(0, 0, 60, 60)))
    assert mask_kind(granule.cloud_mask) == ("classi" if baseline == "05.09" else "gml")
    coarse = granule_grid().coarsened(6)
    with ExitStack() as stack:
        mask = CloudMask(
            stack, Path(granule.cloud_mask), coarse, kind=mask_kind(granule.cloud_mask)
        )
        cloud = aoi_cloud([granule.footprint], [mask], coarse)
    assert cloud.cloud_fraction == 0.25 and cloud.coverage == 1.0 and cloud.source == "mask"
    # Half the AOI outside the granule: coverage halves, cloud is a share of what is covered.
    wide = granule_grid(size=2 * SIZE).coarsened(6)
    with ExitStack() as stack:
        mask = CloudMask(stack, Path(granule.cloud_mask), wide, kind=mask_kind(granule.cloud_mask))
        cloud = aoi_cloud([granule.footprint], [mask], wide)
    assert (cloud.cloud_fraction, cloud.coverage) == (0.25, 0.5)


def test_gml_without_clouds_and_with_a_hole() -> None:
    empty = '<eop:Mask xmlns:eop="e" xmlns:gml="g"><eop:maskMembers/></eop:Mask>'
    assert parse_gml_clouds(empty, source="x") == (None, [])
    text = """<eop:Mask xmlns:eop="e" xmlns:gml="g"><eop:maskMembers>
    <eop:MaskFeature><eop:maskType>CIRRUS</eop:maskType><eop:extentOf>
    <gml:Polygon srsName="urn:ogc:def:crs:EPSG::32632"><gml:exterior><gml:LinearRing>
    <gml:posList srsDimension="2">0 0 10 0 10 10 0 0</gml:posList></gml:LinearRing></gml:exterior>
    <gml:interior><gml:LinearRing><gml:posList>1 1 2 1 2 2 1 1</gml:posList></gml:LinearRing>
    </gml:interior></gml:Polygon></eop:extentOf></eop:MaskFeature>
    <eop:MaskFeature><eop:maskType>SNOW</eop:maskType><eop:extentOf><gml:Polygon>
    <gml:exterior><gml:LinearRing><gml:posList>0 0 5 0 5 5 0 0</gml:posList></gml:LinearRing>
    </gml:exterior></gml:Polygon></eop:extentOf></eop:MaskFeature></eop:maskMembers></eop:Mask>"""
    epsg, polygons = parse_gml_clouds(text, source="x")
    assert epsg == 32632 and len(polygons) == 1 and len(polygons[0]["coordinates"]) == 2


# --------------------------------------------------------------------------------- ranking


def _candidate(tmp_path: Path, name: str, day: int, **kw: object) -> Candidate:
    from contextlib import ExitStack

    granule = write_granule(tmp_path / name, spec(name, sensed=datetime(2023, 8, day), **kw))
    coarse = granule_grid().coarsened(6)
    with ExitStack() as stack:
        mask = CloudMask(stack, Path(granule.cloud_mask), coarse, kind="classi")
        cloud = aoi_cloud([granule.footprint], [mask], coarse)
    return Candidate(day=granule.day, granules=(granule,), cloud=cloud)


def test_ranking_by_cloud_in_the_aoi_then_coverage(tmp_path: Path) -> None:
    cloudy = _candidate(tmp_path, "cloudy", 1, cloud=(0, 0, 60, 60), scene_cloud_pct=0.1)
    half = _candidate(tmp_path, "half", 2, nodata_cols=60, scene_cloud_pct=30.0)
    full = _candidate(tmp_path, "full", 3, scene_cloud_pct=50.0)
    assert (half.cloud_fraction, half.coverage) == (0.0, 0.5)
    ranked = rank([cloudy, half, full])
    # Scene cloud cover plays no part: the clear, full date first, although its scene is the
    # cloudiest; the clear half-covered date next (a tie on cloud, decided by coverage).
    assert [c.granules[0].item_id for c in ranked] == ["full", "half", "cloudy"]
    assert choose(ranked, composite="best", median_dates=3) == ranked[:1]
    assert choose(ranked, composite="median", median_dates=2) == ranked[:2]


def test_an_aoi_polygon_ranks_by_the_cloud_inside_it_not_its_box(tmp_path: Path) -> None:
    """Two dates, each a quarter cloudy: over the box they tie; over an --aoi polygon that is
    the granule's south-east quarter, the date clouded in the north-west is clear and the date
    clouded in the south-east is all cloud."""
    from rasterio.warp import transform_geom

    from glaviz.acquire.read import GranuleCache
    from glaviz.acquire.run import rank_dates

    nw = write_granule(
        tmp_path / "nw", spec("NW", sensed=datetime(2023, 8, 1), cloud=(0, 0, 60, 60))
    )
    se = write_granule(
        tmp_path / "se", spec("SE", sensed=datetime(2023, 8, 2), cloud=(60, 60, 120, 120))
    )
    grid, cache = granule_grid(), GranuleCache(tmp_path / "cache")
    boxed = rank_dates([se, nw], grid, cache)
    assert [c.cloud_fraction for c in boxed] == [0.25, 0.25]
    assert [c.granules[0].item_id for c in boxed] == ["NW", "SE"]  # a tie: the earlier date
    x0, x1, y0, y1 = LEFT + 600, LEFT + 1200, TOP - 1200, TOP - 600
    square = {
        "type": "Polygon",
        "coordinates": [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]],
    }
    polygon = transform_geom(f"EPSG:{EPSG}", "EPSG:4326", square)
    ranked = rank_dates([se, nw], grid, cache, polygon=polygon)
    assert [c.granules[0].item_id for c in ranked] == ["NW", "SE"]
    assert ranked[0].cloud_fraction == 0.0 and ranked[1].cloud_fraction > 0.9
    assert ranked[0].coverage == 1.0


def test_a_tile_reprocessed_on_one_day_counts_once(tmp_path: Path) -> None:
    old = write_granule(tmp_path / "o", spec("old", baseline="04.00"))
    new = write_granule(tmp_path / "n", spec("new", baseline="05.09"))
    other = write_granule(tmp_path / "t", spec("t", tile="32TNS", sensed=datetime(2023, 8, 15, 11)))
    days = by_day([new, other, old])
    assert [[g.item_id for g in gs] for gs in days.values()] == [["new", "t"]]


# ------------------------------------------------------------------------------- composite


def test_best_mosaics_two_tiles_of_one_day_exactly(tmp_path: Path) -> None:
    """Two granules side by side (new and old baseline): every pixel from its own granule,
    converted with its own offset; cloud in the first is NaN and flagged."""
    from contextlib import ExitStack

    west = write_granule(tmp_path / "w", spec("W", cloud=(0, 0, 60, 60)))
    east = write_granule(
        tmp_path / "e", spec("E", tile="32TNS", left=LEFT + 10 * SIZE, baseline="03.01", seed=7)
    )
    grid = granule_grid(size=2 * SIZE)
    with ExitStack() as stack:
        readers = [GranuleReader(stack, files_of(g), grid) for g in (west, east)]
        values, flags = read_all(readers, grid)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    for k, band in enumerate(("B02", "B03", "B04", "B08")):
        expect_w = ((dn_10m(band, rows, cols).astype(np.float64) - 1000) / 10000).astype(np.float32)
        expect_e = (dn_10m(band, rows, cols, 7).astype(np.float64) / 10000).astype(np.float32)
        expect_w[:60, :60] = np.nan
        np.testing.assert_array_equal(values[k, :, :SIZE], expect_w)
        np.testing.assert_array_equal(values[k, :, SIZE:], expect_e)
    # B11/B12 (20 m, bilinear): constant DNs stay exact.
    assert values[4, 100, 100] == np.float32((dn_20m("B11") - 1000) / 10000)
    assert values[5, 100, 200] == np.float32(dn_20m("B12", 7) / 10000)
    assert (flags[:60, :60] == CLOUD).all() and (flags[60:, :] == CLEAR).all()
    assert (flags[:60, SIZE:] == CLEAR).all()


def test_no_data_is_nan_and_flagged(tmp_path: Path) -> None:
    from contextlib import ExitStack

    granule = write_granule(tmp_path, spec("N", nodata_cols=30))
    grid = granule_grid()
    with ExitStack() as stack:
        values, flags = read_all([GranuleReader(stack, files_of(granule), grid)], grid)
    assert np.isnan(values[:, :, :30]).all() and (flags[:, :30] == NO_DATA).all()
    assert not np.isnan(values[:, :, 30:]).any()


def test_median_of_dates_leaves_clouds_out(tmp_path: Path) -> None:
    """Three dates with DNs 0, 20 and 40 apart; the first is cloudy in one corner, where the
    median is the mean of the other two."""
    from contextlib import ExitStack

    from rasterio.windows import Window

    seeds = (0, 2, 4)  # dn_10m adds 10 per seed step
    granules = [
        write_granule(
            tmp_path / str(s), spec(f"D{s}", seed=s, cloud=(0, 0, 60, 60) if s == 0 else None)
        )
        for s in seeds
    ]
    grid = granule_grid()
    with ExitStack() as stack:
        dates = [[GranuleReader(stack, files_of(g), grid)] for g in granules]
        values, flags = median(dates, Window(0, 0, grid.width, grid.height))
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    dns = np.stack([dn_10m("B04", rows, cols, s).astype(np.float64) for s in seeds])
    expect = np.median(dns, axis=0)
    expect[:60, :60] = dns[1:, :60, :60].mean(axis=0)
    np.testing.assert_allclose(values[2], (expect - 1000) / 10000, rtol=0, atol=1e-7)
    assert (flags == CLEAR).all()


def test_l2a_scene_classification_as_cloud_mask(tmp_path: Path) -> None:
    """SCL classes 3 (shadow), 8, 9 (cloud) and 10 (cirrus) are cloud; 11 (snow) is not."""
    from contextlib import ExitStack

    import rasterio
    from rasterio.windows import Window

    grid = granule_grid(size=12, res=20.0)
    scl = np.array([[3, 8, 9, 10, 11, 4]] * 6, dtype=np.uint8)
    path = tmp_path / "SCL.tif"
    profile = {"driver": "GTiff", "width": 6, "height": 6, "count": 1, "dtype": "uint8",
               "crs": grid.crs, "transform": grid.transform}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scl, 1)
    assert mask_kind(str(path)) == "scl"
    with ExitStack() as stack:
        cloud = CloudMask(stack, path, grid, kind="scl").read(Window(0, 0, 6, 6))
    assert cloud[0].tolist() == [True, True, True, True, False, False]


def test_a_composite_is_dated_by_its_middle_image() -> None:
    from datetime import date

    from glaviz.acquire.select import composite_date

    days = [date(2023, 9, 3), date(2023, 8, 14), date(2023, 8, 24)]
    assert composite_date(days[:1]) == date(2023, 9, 3)
    assert composite_date(days) == date(2023, 8, 24)
    assert composite_date([*days, date(2023, 9, 30)]) == date(2023, 8, 24)  # earlier middle
