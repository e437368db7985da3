"""glaviz acquire's search side: options → region and window → catalogue search → granules.

Catalogue answers are real recorded Earth Search responses (``tests/fixtures/stac/``, see
``PROVENANCE.md``) served by ``tests/stac_server.py``; nothing reaches the network.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from glaviz.acquire import search, sources
from glaviz.acquire.aoi import (
    MAX_AREA_KM2,
    Aoi,
    aoi_from_config,
    bbox_area_km2,
    bbox_polygon,
    check_area,
    read_aoi,
    utm_epsg,
)
from glaviz.acquire.search import SearchRequest, request_from_config, safe_paths
from glaviz.acquire.season import default_season, search_window, season_window
from glaviz.config import AcquireConfig
from glaviz.errors import ConfigError, DownloadError, InputError
from tests.range_server import range_server
from tests.stac_server import FIXTURES, stac_server

#: Inside the footprint of the recorded item S2B_27VWK_20240206_0_L1C (south Iceland).
ICELAND = (-20.95, 62.95, -20.9, 63.0)
FEB_2024 = (date(2024, 2, 1), date(2024, 2, 29))
ENV = (
    sources.STAC_URL_ENV,
    sources.L1C_BASE_ENV,
    sources.L2A_BASE_ENV,
    sources.DEM_BASE_ENV,
    sources.CDSE_ACCESS_KEY_ENV,
    sources.CDSE_SECRET_KEY_ENV,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No mirror, credential or proxy from the developer's environment; quick retries."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(search, "BACKOFF_S", 0.0)


def _request(**changes: object) -> SearchRequest:
    values: dict[str, object] = dict(
        bbox=ICELAND,
        start=FEB_2024[0],
        end=FEB_2024[1],
        max_cloud_pct=20.0,
        source="earth-search",
        level="l1c",
    )
    values.update(changes)
    return SearchRequest(**values)  # type: ignore[arg-type]


def _config(**values: object) -> AcquireConfig:
    return AcquireConfig(output=Path("out"), **values)  # type: ignore[arg-type]


def _message(exc: ValidationError) -> str:
    return exc.errors()[0]["msg"]


# --- options ------------------------------------------------------------------------------------


def test_bbox_is_parsed_from_one_comma_separated_value() -> None:
    config = _config(bbox="7.9, 46.4,8.1,46.6", year=2023)
    assert config.bbox == (7.9, 46.4, 8.1, 46.6)


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ("8.1,46.4,7.9,46.6", "bbox is inverted: west 8.1 is not less than east 7.9"),
        ("7.9,46.6,8.1,46.4", "bbox is inverted: south 46.6 is not less than north 46.4"),
        ("7.9,46.4,181,46.6", "bbox east longitude 181.0 is outside -180..180"),
        ("7.9,-91,8.1,46.6", "bbox south latitude -91.0 is outside -90..90"),
        ("7.9,46.4,8.1", "bbox must be four numbers W,S,E,N in degrees, got '7.9,46.4,8.1'"),
    ],
)
def test_bad_bbox_is_one_message(bbox: str, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _config(bbox=bbox, year=2023)
    assert caught.value.error_count() == 1
    assert expected in _message(caught.value)


def test_reversed_dates_are_one_message() -> None:
    with pytest.raises(ValidationError) as caught:
        _config(bbox=ICELAND, dates="2023-10-15/2023-08-01")
    assert caught.value.error_count() == 1
    assert "dates are reversed: 2023-10-15 is after 2023-08-01" in _message(caught.value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"year": 2023}, "give exactly one area of interest"),
        ({"bbox": ICELAND, "aoi": "a.geojson", "year": 2023}, "give exactly one area"),
        ({"bbox": ICELAND}, "give exactly one time window"),
        ({"bbox": ICELAND, "year": 2023, "dates": "2023-08-01/2023-09-01"}, "exactly one time"),
        ({"bbox": ICELAND, "dates": "2023-08-01/2023-09-01", "season": "08-01/09-01"}, "needs"),
        ({"bbox": ICELAND, "year": 2023, "season": "08-01"}, "is not MM-DD/MM-DD"),
        ({"bbox": ICELAND, "year": 2023, "season": "02-30/03-01"}, "is not a day of the year"),
        ({"bbox": ICELAND, "year": 2023, "crs": "UTM32"}, "neither 'auto' nor EPSG:N"),
        ({"bbox": ICELAND, "year": 2014}, "greater than or equal to 2015"),
    ],
)
def test_inconsistent_options_are_one_message(values: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _config(**values)
    assert caught.value.error_count() == 1
    assert expected in _message(caught.value)


def test_crs_option() -> None:
    assert _config(bbox=ICELAND, year=2023).epsg is None
    assert _config(bbox=ICELAND, year=2023, crs="epsg:32627").epsg == 32627


def test_a_search_alone_writes_nothing() -> None:
    config = _config(bbox=ICELAND, year=2023, search_only=True)
    assert config.output_files() == [] and config.record_path() is None
    full = _config(bbox=ICELAND, year=2023)
    assert full.output_files()[-1] == Path("out/acquire.json") == full.record_path()


# --- season -------------------------------------------------------------------------------------


def test_default_season_follows_the_hemisphere_of_the_aoi_centre() -> None:
    assert default_season(46.5) == ((8, 1), (10, 15))
    assert default_season(0.0) == ((8, 1), (10, 15))
    assert default_season(-0.1) == ((2, 1), (4, 15))
    north = search_window(year=2023, season=None, dates=None, centre_lat=63.0)
    south = search_window(year=2023, season=None, dates=None, centre_lat=-50.0)
    assert north == (date(2023, 8, 1), date(2023, 10, 15))
    assert south == (date(2023, 2, 1), date(2023, 4, 15))


def test_season_override_wrapping_and_leap_day() -> None:
    assert search_window(year=2023, season="07-15/09-30", dates=None, centre_lat=-50.0) == (
        date(2023, 7, 15),
        date(2023, 9, 30),
    )
    assert season_window(2023, ((12, 1), (3, 31))) == (date(2023, 12, 1), date(2024, 3, 31))
    assert season_window(2023, ((2, 1), (2, 29))) == (date(2023, 2, 1), date(2023, 2, 28))
    assert season_window(2024, ((2, 1), (2, 29))) == (date(2024, 2, 1), date(2024, 2, 29))
    assert search_window(
        year=None, season=None, dates="2022-01-03/2022-01-05", centre_lat=10.0
    ) == (date(2022, 1, 3), date(2022, 1, 5))


def test_request_from_config_uses_the_southern_season_south_of_the_equator() -> None:
    config = _config(bbox="-73.6,-49.4,-73.4,-49.2", year=2022, max_cloud=3, level="l2a")
    request = request_from_config(config)
    assert request == SearchRequest(
        bbox=(-73.6, -49.4, -73.4, -49.2),
        start=date(2022, 2, 1),
        end=date(2022, 4, 15),
        max_cloud_pct=3.0,
        source="earth-search",
        level="l2a",
    )
    assert request.collection == "sentinel-2-c1-l2a"
    assert request.datetime_range == "2022-02-01T00:00:00Z/2022-04-15T23:59:59Z"


# --- area of interest ---------------------------------------------------------------------------


def test_area_and_utm_zone_exact_values() -> None:
    # R² · Δλ · (sin φ₂ − sin φ₁) with R = 6371.0072 km: one degree square at the equator.
    assert bbox_area_km2((0.0, 0.0, 1.0, 1.0)) == pytest.approx(12363.7119, abs=1e-3)
    # 6371.0072² · 0.0349066 · (0.8746197 − 0.8660254) for 2° × 1° at 60–61° N.
    assert bbox_area_km2((10.0, 60.0, 12.0, 61.0)) == pytest.approx(12176.83, abs=0.05)
    assert utm_epsg(8.0, 46.5) == 32632
    assert utm_epsg(-70.0, -33.0) == 32719
    assert utm_epsg(180.0, 10.0) == 32660 and utm_epsg(-180.0, 10.0) == 32601
    lon, lat = Aoi(ICELAND, bbox_polygon(ICELAND), "--bbox").centre
    assert utm_epsg(lon, lat) == 32627  # the recorded item's own proj:epsg


def test_too_large_aoi_needs_allow_large() -> None:
    # 6371.0072² · 0.0349066 · (sin 47.5° − sin 46°) = 25,414.9 km²
    large = _config(bbox="7,46,9,47.5", year=2023)
    with pytest.raises(ConfigError) as caught:
        aoi_from_config(large)
    message = str(caught.value)
    assert (
        "bounding box 7,46,9,47.5 covers 25,415 km²" in message
        and f"limit of {MAX_AREA_KM2:,.0f} km²" in message
    )
    assert "--allow-large" in message
    allowed = large.model_copy(update={"allow_large": True})
    assert aoi_from_config(allowed).bbox == (7.0, 46.0, 9.0, 47.5)
    check_area(Aoi(ICELAND, bbox_polygon(ICELAND), "x"), allow_large=False)


def _feature_collection(path: Path, geometries: list[dict[str, object]]) -> Path:
    features = [{"type": "Feature", "properties": {}, "geometry": g} for g in geometries]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_aoi_file_geojson(tmp_path: Path) -> None:
    one = bbox_polygon((7.9, 46.4, 8.0, 46.5))
    two = bbox_polygon((8.05, 46.45, 8.1, 46.6))
    path = _feature_collection(tmp_path / "aoi.geojson", [one, two])
    aoi = read_aoi(path)
    assert aoi.bbox == (7.9, 46.4, 8.1, 46.6)
    assert aoi.geometry["type"] == "MultiPolygon" and len(aoi.geometry["coordinates"]) == 2
    # The search takes the box; the dates are ranked inside the polygons (a box has none).
    request = request_from_config(_config(aoi=str(path), year=2023))
    assert request.bbox == aoi.bbox and request.polygon == aoi.geometry
    assert request_from_config(_config(bbox="7.9,46.4,8.1,46.6", year=2023)).polygon is None


def test_aoi_file_failures_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_aoi(tmp_path / "missing.geojson")
    point = {"type": "Point", "coordinates": [8.0, 46.5]}
    with pytest.raises(InputError, match=r"holds no polygon \(found: Point\)"):
        read_aoi(_feature_collection(tmp_path / "point.geojson", [point]))
    metres = bbox_polygon((420000.0, 5150000.0, 430000.0, 5160000.0))
    with pytest.raises(InputError, match="must be longitude/latitude degrees"):
        read_aoi(_feature_collection(tmp_path / "utm.geojson", [metres]))
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(InputError, match="cannot read AOI file"):
        read_aoi(tmp_path / "bad.geojson")


def test_aoi_file_in_another_crs_is_reprojected(tmp_path: Path) -> None:
    import geopandas
    from shapely.geometry import box

    path = tmp_path / "aoi.gpkg"
    frame = geopandas.GeoDataFrame(geometry=[box(420000, 5150000, 430000, 5160000)], crs=32632)
    frame.to_file(path)
    west, south, east, north = read_aoi(path).bbox
    expected = frame.to_crs(4326).total_bounds
    assert (west, south, east, north) == pytest.approx(tuple(expected), abs=1e-9)
    assert 7.9 < west < east < 8.1 and 46.4 < south < north < 46.7


# --- the SAFE layout ----------------------------------------------------------------------------


def test_safe_paths_of_the_recorded_l1c_item() -> None:
    item = _recorded("earth-search/sentinel-2-l1c_search.json", "S2B_27VWK_20240206_0_L1C")
    props = item["properties"]
    paths = safe_paths(
        tile="27VWK",
        product_uri=props["s2:product_uri"],
        granule_id=props["s2:granule_id"],
        datastrip_id=props["s2:datastrip_id"],
        baseline=props["s2:processing_baseline"],
    )
    safe = "tiles/27/V/WK/S2B_MSIL1C_20240206T131259_N0510_R081_T27VWK_20240206T133903.SAFE"
    granule = f"{safe}/GRANULE/L1C_T27VWK_A036143_20240206T131359"
    assert paths["B02"] == f"{granule}/IMG_DATA/T27VWK_20240206T131259_B02.jp2"
    assert paths["B12"] == f"{granule}/IMG_DATA/T27VWK_20240206T131259_B12.jp2"
    assert paths["metadata"] == f"{safe}/MTD_MSIL1C.xml"
    assert paths["tile_metadata"] == f"{granule}/MTD_TL.xml"
    assert paths["cloud_mask"] == f"{granule}/QI_DATA/MSK_CLASSI_B00.jp2"
    # The item's own (requester-pays) hrefs name the same band files.
    assert item["assets"]["blue"]["href"].endswith("/27/V/WK/2024/2/6/0/B02.jp2")
    assert item["assets"]["swir22"]["href"].endswith("/B12.jp2")


def test_the_recorded_l1c_item_carries_the_baseline_04_offset_itself() -> None:
    item = _recorded("earth-search/sentinel-2-l1c_search.json", "S2B_27VWK_20240206_0_L1C")
    for key in search.COMMON_NAMES.values():
        (band,) = item["assets"][key]["raster:bands"]
        # (DN − 1000) / 10000 = DN · 0.0001 − 0.1: RADIO_ADD_OFFSET −1000, QUANTIFICATION 10000
        assert (band["scale"], band["offset"], band["nodata"]) == (0.0001, -0.1, 0)
    assert "proj:code" not in item["properties"] and "s2:mgrs_tile" not in item["properties"]


def test_safe_paths_before_baseline_04_use_the_vector_cloud_mask() -> None:
    # A real path of this product in a public repository:
    # S2A_MSIL1C_20170612T104021_N0205_R008_T33WXR_20170612T104023.SAFE/GRANULE/
    # L1C_T33WXR_A010301_20170612T104023/QI_DATA/MSK_CLOUDS_B00.gml
    paths = safe_paths(
        tile="33WXR",
        product_uri="S2A_MSIL1C_20170612T104021_N0205_R008_T33WXR_20170612T104023.SAFE",
        granule_id="S2A_OPER_MSI_L1C_TL_SGS__20170612T132152_A010301_T33WXR_N02.05",
        datastrip_id="S2A_OPER_MSI_L1C_DS_SGS__20170612T132152_S20170612T104023_N02.05",
    )
    assert paths["cloud_mask"] == (
        "tiles/33/W/XR/S2A_MSIL1C_20170612T104021_N0205_R008_T33WXR_20170612T104023.SAFE/"
        "GRANULE/L1C_T33WXR_A010301_20170612T104023/QI_DATA/MSK_CLOUDS_B00.gml"
    )
    assert paths["B04"].endswith("/IMG_DATA/T33WXR_20170612T104021_B04.jp2")


def test_long_pre_2017_names_are_refused_with_a_way_out() -> None:
    with pytest.raises(InputError, match="compact SAFE naming"):
        safe_paths(
            tile="32TMS",
            product_uri="S2A_OPER_PRD_MSIL1C_PDMC_20160615T222137_R065_V20160615T101032_"
            "20160615T101032.SAFE",
            granule_id="x",
            datastrip_id="y",
        )


def _recorded(name: str, item_id: str) -> dict[str, object]:
    data = json.loads((FIXTURES / name).read_text())
    return next(f for f in data["features"] if f["id"] == item_id)


# --- searching ----------------------------------------------------------------------------------


def test_search_granules_from_the_recorded_l1c_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sources.L1C_BASE_ENV, "http://127.0.0.1:9/bucket/")
    with stac_server("l1c", "dem30") as server:
        granules = search.search_granules(_request(), stac_url=server.url)
    assert len(granules) == 1
    granule = granules[0]
    assert granule.item_id == "S2B_27VWK_20240206_0_L1C"
    assert (granule.collection, granule.level, granule.tile) == ("sentinel-2-l1c", "l1c", "27VWK")
    assert granule.sensed == datetime(2024, 2, 6, 13, 14, 11, 918000, tzinfo=UTC)
    assert (granule.platform, granule.baseline, granule.epsg) == ("sentinel-2b", "05.10", 32627)
    assert granule.scene_cloud_pct == pytest.approx(9.93604802923519)
    assert granule.footprint["type"] == "Polygon"
    expected = safe_paths(
        tile="27VWK",
        product_uri=granule.properties["s2:product_uri"],
        granule_id=granule.properties["s2:granule_id"],
        datastrip_id=granule.properties["s2:datastrip_id"],
    )
    assert granule.bands["B08"] == "http://127.0.0.1:9/bucket/" + expected["B08"]
    assert granule.metadata == "http://127.0.0.1:9/bucket/" + expected["metadata"]
    assert granule.cloud_mask == "http://127.0.0.1:9/bucket/" + expected["cloud_mask"]
    body = server.searches()[0]
    assert body["collections"] == ["sentinel-2-l1c"] and body["bbox"] == list(ICELAND)
    assert body["datetime"] == "2024-02-01T00:00:00Z/2024-02-29T23:59:59Z"
    assert body["query"] == {"eo:cloud_cover": {"lte": 20.0}}


def test_default_hrefs_are_google_cloud() -> None:
    with stac_server("l1c") as server:
        (granule,) = search.search_granules(_request(), stac_url=server.url)
    assert granule.bands["B02"].startswith(
        "https://storage.googleapis.com/gcp-public-data-sentinel-2/tiles/27/V/WK/S2B_MSIL1C_"
    )


def test_stac_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with stac_server("l1c") as server:
        monkeypatch.setenv(sources.STAC_URL_ENV, server.url)
        assert [g.tile for g in search.search_granules(_request())] == ["27VWK"]
    assert sources.stac_url("cdse", "http://mirror/v1/") == "http://mirror/v1"


def test_no_scene_names_the_search_and_what_to_widen() -> None:
    with stac_server("l1c") as server:
        with pytest.raises(InputError) as cloudy:
            search.search_granules(_request(max_cloud_pct=5), stac_url=server.url)
        with pytest.raises(InputError) as empty:
            search.search_granules(
                _request(start=date(2023, 8, 1), end=date(2023, 10, 15)), stac_url=server.url
            )
    assert str(cloudy.value) == (
        f"no Sentinel-2 scene found in {server.url}: sentinel-2-l1c (earth-search) over --bbox "
        "-20.95,62.95,-20.9,63 from 2024-02-01/2024-02-29 with scene cloud cover ≤ 5 %; 1 "
        "cloudier scene(s) exist, the clearest at 9.9 %; raise --max-cloud, or widen "
        "--season/--dates"
    )
    assert "from 2023-08-01/2023-10-15" in str(empty.value)
    assert str(empty.value).endswith(
        "; widen --season/--dates, or check that the AOI is on land Sentinel-2 images"
    )


def test_catalogue_without_the_query_extension_is_filtered_here() -> None:
    with stac_server("l1c") as server:
        conforms = server.landing["conformsTo"]
        server.landing = {**server.landing, "conformsTo": [c for c in conforms if "query" not in c]}
        (granule,) = search.search_granules(_request(), stac_url=server.url)
        with pytest.raises(InputError, match=r"1 cloudier scene\(s\) exist, the clearest at 9.9 %"):
            search.search_granules(_request(max_cloud_pct=5), stac_url=server.url)
        bodies = server.searches()
    assert granule.tile == "27VWK"
    assert len(bodies) == 2 and all("query" not in b for b in bodies)


def test_paging_follows_every_next_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "PAGE_LIMIT", 3)
    with stac_server("dem30") as server:
        tiles = search.search_dem((-179.9, -89.9, -170.1, -89.1), stac_url=server.url)
    assert [t.item_id for t in tiles] == [
        f"Copernicus_DSM_COG_10_S90_00_W{lon:03d}_00_DEM" for lon in range(171, 181)
    ]
    bodies = server.searches()
    assert [len(b.get("next", "")) > 0 for b in bodies] == [False, True, True, True]
    assert bodies[1]["next"] == (
        "2021-04-22T00:00:00Z,Copernicus_DSM_COG_10_S90_00_W178_00_DEM,cop-dem-glo-30"
    )
    assert all(t.product == "GLO-30" for t in tiles)
    assert tiles[0].href == (
        "https://copernicus-dem-30m.s3.amazonaws.com/Copernicus_DSM_COG_10_S90_00_W171_00_DEM/"
        "Copernicus_DSM_COG_10_S90_00_W171_00_DEM.tif"
    )


def test_glo90_fills_the_cells_glo30_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sources.DEM_BASE_ENV, "http://127.0.0.1:9/dem")
    cell = (-114.6, 53.2, -114.4, 53.4)
    with stac_server("dem90-n53w115") as server:
        (fill,) = search.search_dem(cell, stac_url=server.url)
    assert (fill.item_id, fill.product) == ("Copernicus_DSM_COG_30_N53_00_W115_00_DEM", "GLO-90")
    assert fill.href == (
        "http://127.0.0.1:9/dem/copernicus-dem-90m/Copernicus_DSM_COG_30_N53_00_W115_00_DEM/"
        "Copernicus_DSM_COG_30_N53_00_W115_00_DEM.tif"
    )
    with stac_server("dem90-n53w115", "dem30-n53w115") as server:
        (full,) = search.search_dem(cell, stac_url=server.url)
        asked = [b["collections"] for b in server.searches()]
    assert (full.item_id, full.product) == ("Copernicus_DSM_COG_10_N53_00_W115_00_DEM", "GLO-30")
    assert asked == [["cop-dem-glo-30"]]  # nothing missing: GLO-90 is not searched


def test_dem_cells() -> None:
    assert search.dem_cell("Copernicus_DSM_COG_10_S90_00_W180_00_DEM") == (-90, -180)
    assert search.dem_cell("Copernicus_DSM_COG_30_N53_00_E007_00_DEM") == (53, 7)
    assert search.bbox_cells((7.5, 46.2, 8.5, 46.8)) == {(46, 7), (46, 8)}
    assert search.bbox_cells((7.0, 46.0, 8.0, 47.0)) == {(46, 7)}


def test_recorded_l2a_item_maps_to_its_cogs(monkeypatch: pytest.MonkeyPatch) -> None:
    item = _recorded("earth-search/sentinel-2-l2a_landsat_search.json", "S2A_13TDE_20231008_0_L2A")
    root = "sentinel-s2-l2a-cogs/13/T/DE/2023/10/S2A_13TDE_20231008_0_L2A"
    granule = search.granule_from_item(item, source="earth-search", level="l2a")
    assert granule.bands["B11"] == f"{sources.L2A_BUCKET_URL}/{root}/B11.tif"
    assert granule.cloud_mask == f"{sources.L2A_BUCKET_URL}/{root}/SCL.tif"
    assert (granule.tile, granule.baseline, granule.epsg) == ("13TDE", "05.09", 32613)
    monkeypatch.setenv(sources.L2A_BASE_ENV, "http://127.0.0.1:9/cogs")
    moved = search.granule_from_item(item, source="earth-search", level="l2a")
    assert moved.bands["B02"] == f"http://127.0.0.1:9/cogs/{root}/B02.tif"


# --- failures of the service --------------------------------------------------------------------


def test_service_down_is_retried_a_bounded_number_of_times() -> None:
    with stac_server("l1c") as server:
        server.fail_next = 100
        with pytest.raises(DownloadError) as caught:
            search.search_granules(_request(), stac_url=server.url)
        assert len(server.requests) == search.RETRIES + 1
    message = str(caught.value)
    assert message.startswith(f"the STAC catalogue {server.url} did not answer after 3 retries")
    assert message.endswith("point --stac-url/$GLAVIZ_STAC_URL at a mirror")


def test_a_short_outage_is_ridden_out() -> None:
    with stac_server("l1c") as server:
        server.fail_next = 2
        granules = search.search_granules(_request(), stac_url=server.url)
    assert [g.tile for g in granules] == ["27VWK"]


def test_slow_service_times_out_after_bounded_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "TIMEOUT_S", (2.0, 0.2))
    with stac_server("l1c") as server:
        server.delay_s = 0.6
        with pytest.raises(DownloadError, match="did not answer after 3 retries"):
            search.search_granules(_request(), stac_url=server.url)
        assert len(server.requests) == search.RETRIES + 1


def test_wrong_address_is_not_retried(tmp_path: Path) -> None:
    with stac_server("l1c") as server:
        with pytest.raises(DownloadError) as caught:
            search.search_granules(_request(), stac_url=server.url + "/nothing")
        assert len(server.requests) == 1
    message = str(caught.value)
    assert message.startswith(f"the STAC catalogue {server.url}/nothing answered HTTP 404")
    assert "check --stac-url/$GLAVIZ_STAC_URL" in message
    with range_server(tmp_path) as files:
        (tmp_path / "v1").write_text("<html>not a catalogue</html>")
        with pytest.raises(DownloadError, match="answered something that is not a STAC API"):
            search.search_granules(_request(), stac_url=files.url + "/v1")


def test_refused_connection_is_one_download_error() -> None:
    from tests.fake_servers import refused_url

    url = refused_url()
    with pytest.raises(DownloadError, match=f"the STAC catalogue {url} did not answer"):
        search.search_dem(ICELAND, stac_url=url)


# --- CDSE credentials ---------------------------------------------------------------------------


def test_a_malformed_cdse_endpoint_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(sources.CDSE_ACCESS_KEY_ENV, "KEY")
    monkeypatch.setenv(sources.CDSE_SECRET_KEY_ENV, "SECRET")
    monkeypatch.setenv(sources.CDSE_S3_ENDPOINT_ENV, "eodata.example.org")
    with stac_server("l1c") as server:
        with pytest.raises(ConfigError, match=r"GLAVIZ_CDSE_S3_ENDPOINT='eodata.example.org'"):
            search.search_granules(_request(source="cdse"), stac_url=server.url)
        assert server.requests == []


def test_missing_cdse_credentials_name_the_variables_before_any_request(tmp_path: Path) -> None:
    with stac_server("l1c") as server:
        with pytest.raises(ConfigError) as caught:
            search.search_granules(_request(source="cdse"), stac_url=server.url)
        assert server.requests == []
    message = str(caught.value)
    assert "set GLAVIZ_CDSE_S3_ACCESS_KEY and GLAVIZ_CDSE_S3_SECRET_KEY" in message
    assert "machine eodata.dataspace.copernicus.eu" in message and "no-netrc" in message


def test_cdse_credentials_from_environment_or_netrc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine eodata.dataspace.copernicus.eu login AKIA1 password s3cr3t\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    found = sources.cdse_credentials()
    assert (found.access_key, found.secret_key, found.origin) == ("AKIA1", "s3cr3t", str(netrc))
    assert "s3cr3t" not in repr(found) and "AKIA1" not in repr(found)
    with found.rasterio_env():
        import rasterio

        options = rasterio.env.getenv()
    assert options["AWS_S3_ENDPOINT"] == "eodata.dataspace.copernicus.eu"
    assert options["AWS_HTTPS"] == "YES" and options["AWS_ACCESS_KEY_ID"] == "AKIA1"
    monkeypatch.setenv(sources.CDSE_ACCESS_KEY_ENV, "ENVKEY")
    with pytest.raises(ConfigError, match=r"only one of the two is set"):
        sources.cdse_credentials(netrc_path=tmp_path / "none")
    monkeypatch.setenv(sources.CDSE_SECRET_KEY_ENV, "ENVSECRET")
    assert sources.cdse_credentials().access_key == "ENVKEY"


def test_attributions() -> None:
    one = sources.sentinel2_attribution([2023])
    assert one == "Contains modified Copernicus Sentinel data 2023"
    assert sources.sentinel2_attribution([2024, 2022, 2023, 2022]) == (
        "Contains modified Copernicus Sentinel data 2022-2024"
    )
    assert sources.DEM_ATTRIBUTION.startswith("© DLR e.V. 2010-2014 and © Airbus")
    assert set(sources.LICENCES) == {"sentinel-2", "copernicus-dem"}


# --- the test servers themselves ----------------------------------------------------------------


def test_stac_server_pages_get_searches_like_earth_search() -> None:
    from pystac_client import Client

    with stac_server("dem30") as server:
        client = Client.open(server.url)
        found = client.search(collections=["cop-dem-glo-30"], limit=4, method="GET")
        ids = [i["id"] for i in found.items_as_dicts()]
        gets = [p for m, p, _ in server.requests if m == "GET" and p.endswith("/search")]
    assert len(ids) == 10 and len(gets) == 3
    assert ids[0] == "Copernicus_DSM_COG_10_S90_00_W180_00_DEM"


def test_range_server_serves_gdal_and_counts_bytes(tmp_path: Path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    folder = tmp_path / "bucket" / "copernicus-dem-30m" / "tile"
    folder.mkdir(parents=True)
    path = folder / "tile.tif"
    data = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="float32", crs="EPSG:4326")
    with rasterio.open(path, "w", transform=from_origin(7, 47, 0.01, 0.01), **profile) as dst:
        dst.write(data, 1)
    with range_server(tmp_path / "bucket") as server:
        url = f"/vsicurl/{server.url}/copernicus-dem-30m/tile/tile.tif"
        quiet = rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MAX_RETRY=0)
        with quiet, rasterio.open(url) as src:
            assert (src.read(1) == data).all()
        assert server.requests["/copernicus-dem-30m/tile/tile.tif"] >= 1
        assert 0 < server.total_bytes <= 2 * path.stat().st_size
        assert any(r is not None and r.startswith("bytes=") for _, r in server.ranges)
        server.reset_counts()
        server.fault, server.fault_count = "5xx", None
        failing = rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MAX_RETRY=0)
        with failing, pytest.raises(rasterio.errors.RasterioIOError):
            rasterio.open(url.replace("tile.tif", "tile.tif?x=1"))
        assert server.total_bytes == 0


# --- through the command line: one Error line, nothing written ----------------------------------


class _Line:
    """Equal to one ``Error:`` line that contains ``words``."""

    def __init__(self, words: str) -> None:
        self.words = words

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith("Error: ") and self.words in other

    def __repr__(self) -> str:
        return f"<an Error: line containing {self.words!r}>"


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    from glaviz.cli.app import main

    code = main(["acquire", *args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--bbox", "8.1,46.4,7.9,46.6", "--year", "2023"], 2, "bbox is inverted"),
        (["--bbox", "7.9,46.4,8.1,46.6", "--dates", "2023-10-15/2023-08-01"], 2, "reversed"),
        (["--bbox", "7,46,9,47.5", "--year", "2023"], 2, "--allow-large"),
        (
            ["--bbox", "7.9,46.4,8.1,46.6", "--year", "2023", "--source", "cdse"],
            2,
            "set GLAVIZ_CDSE_S3_ACCESS_KEY and GLAVIZ_CDSE_S3_SECRET_KEY",
        ),
    ],
)
def test_option_failures_are_one_error_line(
    args: list[str],
    code: int,
    words: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.fake_servers import refused_url

    monkeypatch.setenv(sources.STAC_URL_ENV, refused_url())
    out = tmp_path / "out"
    assert _cli([*args, "-o", str(out)], capsys) == (code, [_Line(words)])
    assert not out.exists()


def test_service_down_and_no_scene_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fake_servers import refused_url

    out = tmp_path / "out"
    where = ["--bbox", ",".join(map(str, ICELAND)), "--dates", "2024-02-01/2024-02-29"]
    down = _cli([*where, "-o", str(out), "--stac-url", refused_url()], capsys)
    assert down == (1, [_Line("did not answer after 3 retries")])
    with stac_server("l1c") as server:
        monkeypatch.setenv(sources.STAC_URL_ENV, server.url)
        empty = _cli([*where, "-o", str(out), "--max-cloud", "5"], capsys)
    assert empty == (1, [_Line("clearest at 9.9 %; raise --max-cloud")])
    assert not out.exists()


def test_range_server_faults(tmp_path: Path) -> None:
    import requests

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.bin").write_bytes(bytes(range(200)))
    (tmp_path / "b.bin").write_bytes(b"x" * 10)
    with range_server(tmp_path) as server:
        part = requests.get(f"{server.url}/a/f.bin", headers={"Range": "bytes=10-19"}, timeout=5)
        assert (part.status_code, part.content) == (206, bytes(range(10, 20)))
        assert part.headers["Content-Range"] == "bytes 10-19/200"
        tail = requests.get(f"{server.url}/a/f.bin", headers={"Range": "bytes=-5"}, timeout=5)
        assert tail.content == bytes(range(195, 200))
        beyond = requests.get(f"{server.url}/a/f.bin", headers={"Range": "bytes=300-"}, timeout=5)
        assert beyond.status_code == 416
        assert requests.get(f"{server.url}/../etc/passwd", timeout=5).status_code == 404
        server.fault, server.fault_count, server.fault_paths = "5xx", 1, ("a/",)
        assert requests.get(f"{server.url}/b.bin", timeout=5).status_code == 200
        assert requests.get(f"{server.url}/a/f.bin", timeout=5).status_code == 503
        assert requests.get(f"{server.url}/a/f.bin", timeout=5).status_code == 200
        server.fault, server.fault_count = "refuse", 1
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/a/f.bin", timeout=5)
        assert server.requests["/a/f.bin"] == 6 and server.requests["/b.bin"] == 1
        assert server.bytes_sent["/a/f.bin"] == 10 + 5 + 200 and server.bytes_sent["/b.bin"] == 10
        server.fault, server.fault_count, server.delay_s = "slow", 1, 0.5
        with pytest.raises(requests.Timeout):
            requests.get(f"{server.url}/a/f.bin", timeout=0.1)
