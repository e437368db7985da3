"""glaviz acquire against the real catalogues and buckets (marked ``network``: never in CI).

Run by hand: ``pytest -m network tests/test_acquire_live.py``. These check what the recorded
fixtures cannot: that the services still answer as recorded, and that the Google Cloud paths
computed from a live Earth Search item exist.
"""

from __future__ import annotations

from datetime import date

import pytest

from glaviz.acquire import search, sources
from glaviz.acquire.search import SearchRequest
from glaviz.errors import ConfigError

pytestmark = pytest.mark.network

#: Grosser Aletschgletscher, Switzerland (tile 32TMS), a late-summer month.
ALETSCH = (7.95, 46.45, 8.05, 46.55)
AUGUST_2023 = (date(2023, 8, 1), date(2023, 8, 31))
#: Yerevan, Armenia: public GLO-30 has no tiles there, GLO-90 has.
ARMENIA = (44.4, 40.1, 44.6, 40.3)


@pytest.fixture(autouse=True)
def _public_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (sources.STAC_URL_ENV, sources.L1C_BASE_ENV, sources.DEM_BASE_ENV):
        monkeypatch.delenv(name, raising=False)


def _status(url: str) -> int:
    import requests

    return requests.head(url, timeout=30, allow_redirects=True).status_code


def _request(source: str = "earth-search") -> SearchRequest:
    return SearchRequest(
        bbox=ALETSCH,
        start=AUGUST_2023[0],
        end=AUGUST_2023[1],
        max_cloud_pct=40.0,
        source=source,  # type: ignore[arg-type]
        level="l1c",
    )


def test_earth_search_l1c_items_carry_what_glaviz_reads() -> None:
    granules = search.search_granules(_request())
    assert granules, "Earth Search returned no L1C scene over Aletsch in August 2023"
    for granule in granules:
        assert granule.tile.startswith("32T") and granule.epsg == 32632
        assert granule.baseline is not None and granule.baseline >= "05.00"
        assert granule.scene_cloud_pct is not None and granule.scene_cloud_pct <= 40.0
        assert granule.sensed.date() >= AUGUST_2023[0]
    assert granules == sorted(granules, key=lambda g: (g.sensed, g.tile))


def test_google_cloud_holds_the_files_the_mapping_names() -> None:
    granule = search.search_granules(_request())[0]
    for href in (*granule.bands.values(), granule.metadata, granule.cloud_mask):
        assert href is not None
        assert _status(href) == 200, href


def test_dem_glo30_over_the_alps_and_glo90_fill_in_armenia() -> None:
    alps = search.search_dem(ALETSCH)
    assert [t.item_id for t in alps] == [
        "Copernicus_DSM_COG_10_N46_00_E007_00_DEM",
        "Copernicus_DSM_COG_10_N46_00_E008_00_DEM",
    ]
    assert _status(alps[0].href) == 200
    armenia = search.search_dem(ARMENIA)
    assert [(t.item_id, t.product) for t in armenia] == [
        ("Copernicus_DSM_COG_30_N40_00_E044_00_DEM", "GLO-90")
    ]
    assert _status(armenia[0].href) == 200


def test_cdse_search_is_open_and_its_files_need_the_keys() -> None:
    granules = search.search_granules(_request("cdse"), require_credentials=False)
    assert granules
    granule = granules[0]
    assert granule.bands["B02"].startswith("/vsis3/eodata/")
    assert granule.cloud_mask is not None and granule.metadata is not None
    try:
        credentials = sources.cdse_credentials()
    except ConfigError:
        pytest.skip("no CDSE credentials: the download half of this test needs them")
    import rasterio

    with credentials.rasterio_env(), rasterio.open(granule.bands["B02"]) as src:
        assert src.width == 10980 and src.crs.to_epsg() == granule.epsg
