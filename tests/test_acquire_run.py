"""The whole engine from granules to the folder, with the search replaced by granules written
here: two tiles of one day, a DEM of two products, the outputs, the record, the failure path.

The catalogue side has its own tests (test_acquire_search.py); here ``search_granules`` and
``search_dem`` return local records, so these tests exercise exactly what comes after them.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from glaviz.acquire.granule import DemTile, Granule
from glaviz.config import AcquireConfig
from tests.s2_granules import DemSpec, GranuleSpec, dem_tile, dn_10m, utm_box, write_granule

EPSG = 32632
LEFT, TOP = 399960.0, 5300040.0
SIZE = 120
DAY = datetime(2023, 8, 15, 10, 30)


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Two tiles side by side on one day (west cloudy in a corner, new baseline; east old
    baseline), one cloudier day, and a GLO-30 tile that covers only the west half with a GLO-90
    tile under everything."""
    from glaviz.acquire import search

    monkeypatch.setenv("GLAVIZ_HOME", str(tmp_path / "home"))
    west = write_granule(tmp_path / "w", _spec("W", cloud=(0, 0, 30, 30)))
    east = write_granule(
        tmp_path / "e", _spec("E", tile="32TNS", left=LEFT + 10 * SIZE, baseline="03.01", seed=3)
    )
    cloudy = write_granule(
        tmp_path / "c", _spec("C", sensed=datetime(2023, 8, 20, 10), cloud=(0, 0, 120, 120))
    )
    w, s, e, n = utm_box(EPSG, LEFT, TOP, 10 * SIZE * 2)
    glo30 = dem_tile(
        tmp_path / "dem30.tif", DemSpec("D30", (w - 0.01, s - 0.01, (w + e) / 2, n + 0.01))
    )
    glo90 = dem_tile(
        tmp_path / "dem90.tif",
        DemSpec(
            "D90",
            (w - 0.01, s - 0.01, e + 0.01, n + 0.01),
            product="GLO-90",
            coefficients=(2000.0, 0.0, 0.0),
            res_deg=1 / 400,
        ),
    )
    granules = [west, east, cloudy]
    monkeypatch.setattr(search, "search_granules", lambda request, stac_url=None: granules)
    monkeypatch.setattr(search, "search_dem", lambda bbox, stac_url=None: [glo90, glo30])
    # The AOI: inside both tiles, 2 km × 1 km (in the UTM zone of its centre, 32N).
    aoi = utm_box(EPSG, LEFT + 200, TOP - 200, 800)
    bbox = (aoi[0], aoi[1], aoi[2] + (aoi[2] - aoi[0]), aoi[3])
    return {"bbox": bbox, "granules": granules, "dem": [glo30, glo90]}


def _spec(item: str, **kw: object) -> GranuleSpec:
    base = {"item_id": item, "tile": "32TMS", "epsg": EPSG, "left": LEFT, "top": TOP,
            "size": SIZE, "sensed": DAY}  # fmt: skip
    return GranuleSpec(**{**base, **kw})  # type: ignore[arg-type]


def _moved(granules: list[Granule], root: Path, prefix: str) -> list[Granule]:
    """``granules`` with every file's href moved from below ``root`` to below ``prefix`` (a
    server's URL, or a bucket as GDAL names it), keeping the relative paths."""
    from dataclasses import replace

    def moved(href: str | None) -> str:
        assert href is not None
        return f"{prefix}/{Path(href).relative_to(root).as_posix()}"

    return [
        replace(
            g,
            bands={b: moved(h) for b, h in g.bands.items()},
            metadata=moved(g.metadata),
            cloud_mask=moved(g.cloud_mask),
        )
        for g in granules
    ]


def _config(out: Path, bbox: object, **kw: object) -> AcquireConfig:
    return AcquireConfig(
        bbox=bbox,
        dates="2023-08-01/2023-08-31",
        output=out,
        **kw,  # type: ignore[arg-type]
    )


def test_best_date_two_tiles_written_and_recorded(tmp_path: Path, scene: dict) -> None:
    import rasterio

    from glaviz import api

    out = tmp_path / "out"
    result = api.acquire(_config(out, scene["bbox"]))
    assert [d.isoformat() for d in result.dates] == ["2023-08-15"]
    assert sorted(p.name for p in out.iterdir()) == [
        "acquire.json", "elevation.tif", "optical.tif", "quicklook.png", "stack.tif"
    ]  # fmt: skip
    with rasterio.open(out / "optical.tif") as src:
        assert src.count == 6 and src.dtypes[0] == "float32"
        assert src.descriptions[0] == "B02 blue" and src.descriptions[5] == "B12 swir2"
        assert src.crs.to_epsg() == EPSG and src.res == (10.0, 10.0)
        assert src.transform.c % 10 == 0 and src.transform.f % 10 == 0
        optical = src.read()
        # Pixel by pixel against the granules' DNs: (DN - 1000) / 1e4 in the west tile,
        # DN / 1e4 in the east one (baseline 03.01).
        row, col = src.index(LEFT + 500 + 5, TOP - 505)
        r, c = 50, 50
        assert optical[2, row, col] == np.float32((int(dn_10m("B04", r, c)) - 1000) / 10000)
        row, col = src.index(LEFT + 10 * SIZE + 305, TOP - 405)
        assert optical[2, row, col] == np.float32(int(dn_10m("B04", 40, 30, 3)) / 10000)
    with rasterio.open(out / "elevation.tif") as src:
        elevation = src.read(1)
        # GLO-30 (1000 m) where it has a tile, GLO-90 (2000 m) only where GLO-30 has none.
        assert set(np.unique(elevation)) == {1000.0, 2000.0}
        assert elevation[:, 0].max() == 1000.0 and elevation[:, -1].min() == 2000.0
    with rasterio.open(out / "stack.tif") as src:
        assert src.count == 8 and src.descriptions[6:] == ("elevation", "slope")
        assert src.tags()["ACQUISITION_DATE"] == "2023-08-15"
    with rasterio.open(out / "optical.tif") as src:  # for a stack built from it later
        assert src.tags()["ACQUISITION_DATE"] == "2023-08-15"
    record = json.loads((out / "acquire.json").read_text())
    assert record["radiometry"] == "TOA" and record["command"] == "acquire"
    granules = {g["item_id"]: g for g in record["scenes"][0]["granules"]}
    assert granules["W"]["offsets_applied"]["B02"] == -1000.0
    assert granules["E"]["offsets_applied"]["B02"] == 0.0
    assert granules["W"]["processing_baseline"] == "05.09"
    assert [c["date"] for c in record["candidates"]] == ["2023-08-15", "2023-08-20"]
    assert record["candidates"][1]["cloud_in_aoi"] == 1.0
    assert [t["product"] for t in record["dem"]] == ["GLO-30", "GLO-90"]
    assert "Contains modified Copernicus Sentinel data 2023" in record["attributions"]
    assert 0 < record["result"]["cloud_in_aoi"] < 0.1 and record["result"]["coverage"] == 1.0
    assert "fingerprint" in record and record["config"]["composite"] == "best"
    from PIL import Image

    with Image.open(out / "quicklook.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (optical.shape[1], optical.shape[2])
    # The cloudy corner of the west tile is tinted magenta: red and blue above green.
    corner = pixels[: optical.shape[1] // 8, : optical.shape[2] // 8].reshape(-1, 3).astype(int)
    assert ((corner[:, 0] > corner[:, 1] + 50) & (corner[:, 2] > corner[:, 1] + 50)).any()


def test_l2a_is_recorded_as_boa_with_a_warning(
    tmp_path: Path, scene: dict, caplog: pytest.LogCaptureFixture
) -> None:
    from glaviz import api

    out = tmp_path / "l2a"
    api.acquire(_config(out, scene["bbox"], level="l2a"))
    assert json.loads((out / "acquire.json").read_text())["radiometry"] == "BOA"
    assert any("surface (BOA) reflectance" in r.getMessage() for r in caplog.records)


def test_median_and_search_only(tmp_path: Path, scene: dict) -> None:
    from glaviz import api

    found = api.acquire(_config(tmp_path / "s", scene["bbox"], search_only=True))
    table = found.summary()
    assert "2023-08-15" in table and "32TMS 32TNS" in table
    assert [c["date"] for c in found.to_json()["candidates"]] == ["2023-08-15", "2023-08-20"]
    assert not (tmp_path / "s").exists()
    result = api.acquire(_config(tmp_path / "m", scene["bbox"], composite="median"))
    assert len(result.dates) == 2 and result.to_json()["counts"]["dates"] == 2


def test_a_failure_leaves_nothing(
    tmp_path: Path, scene: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack step fails after optical and elevation were written: no file of the run stays,
    and the folder the run created is gone."""
    from glaviz import api
    from glaviz.errors import InputError

    def broken(**kwargs: object) -> None:
        raise InputError("stack refused")

    monkeypatch.setattr("glaviz.features.compile_stack", broken)
    out = tmp_path / "deep" / "out"
    with pytest.raises(InputError, match="stack refused"):
        api.acquire(_config(out, scene["bbox"]))
    assert not (tmp_path / "deep").exists()


def test_no_date_covers_the_aoi(tmp_path: Path, scene: dict) -> None:
    from glaviz import api
    from glaviz.errors import InputError

    with pytest.raises(InputError, match="covers the AOI"):
        api.acquire(_config(tmp_path / "o", (10.0, 47.0, 10.01, 47.01)))


def test_granule_records_are_plain(scene: dict) -> None:
    assert all(isinstance(g, Granule) for g in scene["granules"])
    assert all(isinstance(t, DemTile) for t in scene["dem"])


def test_an_offset_already_in_the_data_is_not_applied_twice(tmp_path: Path) -> None:
    """Earth Search marks L2A COGs whose DNs it shifted back (``boa_offset_applied``)."""
    from dataclasses import replace

    from glaviz.acquire.read import GranuleCache, cache_key
    from glaviz.acquire.run import _radiometry

    granule = write_granule(tmp_path, _spec("L"))
    cache = GranuleCache(tmp_path / "cache")
    folder = cache_key(granule.collection, granule.item_id)
    assert _radiometry(granule, cache, folder).offset("B04") == -1000.0
    shifted = replace(granule, level="l2a", properties={"earthsearch:boa_offset_applied": True})
    assert _radiometry(shifted, cache, folder).offset("B04") == 0.0
    # Without metadata, a baseline from 04.00 on cannot be converted.
    from glaviz.errors import InputError

    with pytest.raises(InputError, match="RADIO_ADD_OFFSET"):
        _radiometry(replace(granule, metadata=None), cache, folder)


def test_two_tiles_over_http_are_fetched_once_each(
    tmp_path: Path, scene: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same two tiles served by a range server: the first run fetches every file once
    (never a byte twice), a second AOI over both tiles fetches nothing; with a progress bar."""

    from glaviz import api
    from glaviz.acquire import search
    from tests.range_server import range_server

    with range_server(tmp_path) as server:
        granules = _moved(scene["granules"][:2], tmp_path, server.url)
        monkeypatch.setattr(search, "search_granules", lambda request, stac_url=None: granules)
        api.acquire(_config(tmp_path / "one", scene["bbox"]), progress=True)
        assert len(server.requests) == 16  # 2 × (6 bands, metadata, mask)
        for path, sent in server.bytes_sent.items():
            assert sent <= (tmp_path / path.lstrip("/")).stat().st_size, path
        server.reset_counts()
        w, s, e, n = scene["bbox"]
        second = (w + (e - w) / 4, s, e - (e - w) / 4, n - (n - s) / 2)
        result = api.acquire(_config(tmp_path / "two", second))
        assert result.fetched == 0 and server.total_bytes == 0


def test_cdse_files_come_from_s3_with_signed_requests(
    tmp_path: Path, scene: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--source cdse reads everything from the ``eodata`` bucket over S3: bands and the raster
    mask through GDAL's /vsis3/, the metadata XML and the GML mask through boto3. Every request
    is signed with the user's access key, and the secret is sent nowhere and recorded nowhere."""
    import shutil

    import rasterio

    from glaviz import api
    from glaviz.acquire import search, sources
    from tests.range_server import range_server

    bucket = tmp_path / "s3" / "eodata"
    for name in ("w", "e"):  # new baseline (MSK_CLASSI raster) and 03.01 (GML mask)
        shutil.copytree(tmp_path / name, bucket / name)

    granules = _moved(scene["granules"][:2], tmp_path, "/vsis3/eodata")
    monkeypatch.setattr(search, "search_granules", lambda request, stac_url=None: granules)
    monkeypatch.setenv(sources.CDSE_ACCESS_KEY_ENV, "GLAVIZTESTKEY")
    monkeypatch.setenv(sources.CDSE_SECRET_KEY_ENV, "glaviz-test-secret")
    with range_server(tmp_path / "s3") as server:
        monkeypatch.setenv(sources.CDSE_S3_ENDPOINT_ENV, server.url)
        out = tmp_path / "cdse"
        result = api.acquire(_config(out, scene["bbox"], source="cdse"))
        assert result.fetched == 16  # 2 × (6 bands, metadata, mask)
        assert {p.split("/")[2] for p in server.requests} == {"w", "e"}
        assert server.authorizations and all(
            a and a.startswith("AWS4-HMAC-SHA256 Credential=GLAVIZTESTKEY/")
            for a in server.authorizations
        )
        assert not any("glaviz-test-secret" in (a or "") for a in server.authorizations)
    record = (out / "acquire.json").read_text()
    assert "GLAVIZTESTKEY" not in record and "glaviz-test-secret" not in record
    # The same granules read from their local files give the same stack.
    local = scene["granules"][:2]
    monkeypatch.setattr(search, "search_granules", lambda request, stac_url=None: local)
    api.acquire(_config(tmp_path / "local", scene["bbox"]))
    with (
        rasterio.open(out / "optical.tif") as a,
        rasterio.open(tmp_path / "local/optical.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, r"HTTP 403.*keys from environment were refused"),
        (404, r"HTTP 404.*bucket has no such file"),
    ],
)
def test_cdse_refusal_or_missing_file_is_one_clear_error(
    tmp_path: Path, scene: dict, monkeypatch: pytest.MonkeyPatch, status: int, message: str
) -> None:
    from dataclasses import replace

    from glaviz import api
    from glaviz.acquire import search, sources
    from glaviz.errors import DownloadError
    from tests.range_server import range_server

    (tmp_path / "s3" / "eodata").mkdir(parents=True)  # empty: every file answers 404
    west = scene["granules"][0]
    granule = replace(west, metadata="/vsis3/eodata/w/MTD_MSIL1C.xml")
    monkeypatch.setattr(search, "search_granules", lambda request, stac_url=None: [granule])
    monkeypatch.setenv(sources.CDSE_ACCESS_KEY_ENV, "WRONGKEY")
    monkeypatch.setenv(sources.CDSE_SECRET_KEY_ENV, "wrong-secret")
    with range_server(tmp_path / "s3") as server:
        if status != 404:
            server.fault, server.fault_status = "5xx", status
        monkeypatch.setenv(sources.CDSE_S3_ENDPOINT_ENV, server.url)
        out = tmp_path / "refused"
        with pytest.raises(DownloadError, match=message):
            api.acquire(_config(out, scene["bbox"], source="cdse"))
        assert len(server.requests) == 1  # neither is retried
    assert not out.exists()
