"""``glaviz acquire`` end to end against local servers: the recorded Earth Search item of tile
27VWK (Iceland, 6 February 2024, baseline 05.10) served by tests/stac_server.py, and tiny JPEG
2000 files at that item's real bucket paths served by tests/range_server.py, which counts every
request and byte.

The AOIs lie inside the recorded item's footprint. The recordings hold no DEM item over
Iceland, so these runs take the DEM's documented rule for cells without a tile (sea level);
the DEM mosaic itself is tested in test_acquire_run.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glaviz.acquire import search, sources
from glaviz.acquire.grid import target_grid
from glaviz.acquire.search import SearchRequest, search_granules
from glaviz.cli.app import main
from tests.range_server import RangeServer, range_server
from tests.s2_granules import GranuleSpec, write_for_granule
from tests.stac_server import stac_server

ITEM = "S2B_27VWK_20240206_0_L1C"
#: Two AOIs inside the recorded footprint (a triangle along the tile's western edge).
AOI = (-20.99, 63.10, -20.975, 63.11)
SECOND_AOI = (-20.97, 63.095, -20.96, 63.105)
WINDOW = ["--year", "2024", "--season", "02-01/02-28"]
#: The tile's upper-left corner (the item's proj:transform); granule corners keep its 60 m lattice.
TILE_LEFT, TILE_TOP = 499980.0, 7000020.0


def _bbox(box: tuple[float, ...]) -> str:
    return ",".join(str(v) for v in box)


@pytest.fixture
def bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    """The STAC server and the bucket, with the granule files the recorded item maps to."""
    for name in (sources.L2A_BASE_ENV, sources.CDSE_ACCESS_KEY_ENV, sources.CDSE_SECRET_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLAVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(search, "BACKOFF_S", 0.0)
    monkeypatch.setattr("glaviz.acquire.read.HTTP_RETRY_DELAY_S", 0.05)
    with stac_server("landing", "l1c", "dem30") as stac, range_server(tmp_path / "b") as files:
        monkeypatch.setenv(sources.STAC_URL_ENV, stac.url)
        monkeypatch.setenv(sources.L1C_BASE_ENV, files.url)
        monkeypatch.setenv(sources.DEM_BASE_ENV, files.url)
        union = (AOI[0], min(AOI[1], SECOND_AOI[1]), SECOND_AOI[2], AOI[3])
        request = SearchRequest(union, *_dates(), 20.0, "earth-search", "l1c")
        (granule,) = search_granules(request)
        assert granule.item_id == ITEM
        write_for_granule(files.root, granule, _spec_around(union, granule.epsg), files.url)
        yield files


def _dates() -> tuple[object, object]:
    from datetime import date

    return date(2024, 2, 1), date(2024, 2, 28)


def _spec_around(bbox: tuple[float, ...], epsg: int | None) -> GranuleSpec:
    """A granule on the tile's lattice covering ``bbox`` with 600 m to spare."""
    grid = target_grid(bbox)  # type: ignore[arg-type]
    assert grid.crs == f"EPSG:{epsg}"
    left = TILE_LEFT + 60 * ((grid.left - 600 - TILE_LEFT) // 60)
    top = TILE_TOP - 60 * ((TILE_TOP - grid.top - 600) // 60)
    side = max(grid.bounds[2] + 600 - left, top - (grid.bounds[1] - 600))
    from datetime import datetime

    return GranuleSpec(
        item_id=ITEM, tile="27VWK", epsg=epsg or 32627, left=left, top=top,
        size=6 * int(side // 60 + 1), sensed=datetime(2024, 2, 6), cloud=(0, 0, 120, 120),
    )  # fmt: skip


def _run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_acquire_then_deploy_then_rerun_reads_nothing_twice(
    tmp_path: Path, bucket: RangeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import rasterio

    out = tmp_path / "aoi"
    code, result, err = _run(
        "acquire", "--bbox", _bbox(AOI), *WINDOW, "-o", str(out), capsys=capsys
    )
    assert code == 0, err
    assert result["dates"] == ["2024-02-06"] and result["counts"]["fetched"] == 8
    # No byte twice within the run: per file, at most its size was sent.
    for path, sent in bucket.bytes_sent.items():
        assert sent <= (bucket.root / path.lstrip("/")).stat().st_size, path
    record = json.loads((out / "acquire.json").read_text())
    (scene,) = record["scenes"]
    (granule,) = scene["granules"]
    assert granule["item_id"] == ITEM and granule["processing_baseline"] == "05.10"
    assert granule["offsets_applied"] == {b: -1000.0 for b in granule["offsets_applied"]}
    assert granule["quantification_value"] == 10000.0
    assert granule["hrefs"]["B02"].startswith(bucket.url + "/tiles/27/V/WK/S2B_MSIL1C_20240206")
    assert granule["cloud_mask"].endswith("/QI_DATA/MSK_CLASSI_B00.jp2")
    assert record["radiometry"] == "TOA" and scene["coverage"] == 1.0
    assert record["dem"] == [] and record["result"]["dem_coverage"] == 0.0
    assert {lic["data"] for lic in record["licences"]} >= {"Copernicus Sentinel-2"}
    assert "Contains modified Copernicus Sentinel data 2024" in record["attributions"]
    with rasterio.open(out / "stack.tif") as src:
        assert src.count == 8 and src.crs.to_epsg() == 32627

    # The stack maps at once.
    code = main(["deploy", str(out / "stack.tif"), "--weights", "demo", "-o", str(tmp_path / "m")])
    assert code == 0 and (tmp_path / "m" / "outlines.tif").is_file()
    # The stack carries its date, and deploy records it where inventory and change look.
    from glaviz.inventory.grid import acquisition_date

    assert acquisition_date(tmp_path / "m" / "run.json") == "2024-02-06"

    # A re-run with --skip-existing: quick, and not one request to the bucket.
    bucket.reset_counts()
    started = time.perf_counter()
    args = ("acquire", "--bbox", _bbox(AOI), *WINDOW, "-o", str(out), "--skip-existing")
    code, result, _ = _run(*args, capsys=capsys)
    assert code == 0 and result["status"] == "skipped"
    assert time.perf_counter() - started < 5 and sum(bucket.requests.values()) == 0
    # acquire.json is a --config that re-runs the same acquisition (skipped: it is there).
    args = ("acquire", "--config", str(out / "acquire.json"), "--skip-existing")
    code, result, _ = _run(*args, capsys=capsys)
    assert code == 0 and result["status"] == "skipped"

    # A second AOI on the same tile: everything it needs is in the cache.
    code, result, err = _run(
        "acquire", "--bbox", _bbox(SECOND_AOI), *WINDOW, "-o", str(tmp_path / "two"), capsys=capsys
    )
    assert code == 0, err
    assert result["counts"]["fetched"] == 0 and bucket.total_bytes == 0


def test_search_only_lists_and_fetches_no_band(
    tmp_path: Path, bucket: RangeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    args = ("acquire", "--bbox", _bbox(AOI), *WINDOW, "-o", str(out), "--search-only")
    code, result, err = _run(*args, capsys=capsys)
    assert code == 0, err
    (candidate,) = result["candidates"]
    assert candidate["date"] == "2024-02-06" and candidate["tiles"] == ["27VWK"]
    assert candidate["baselines"] == ["05.10"] and candidate["coverage"] == 1.0
    assert 0 < candidate["cloud_in_aoi"] < 1
    fetched = {p for p, n in bucket.requests.items() if n}
    assert fetched and all(p.endswith("MSK_CLASSI_B00.jp2") for p in fetched)
    assert not out.exists()


def test_a_failing_bucket_is_one_error_and_leaves_nothing(
    tmp_path: Path, bucket: RangeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket.fault = "5xx"
    bucket.fault_paths = ("tiles/",)
    out = tmp_path / "f"
    capsys.readouterr()
    code = main(["acquire", "--bbox", _bbox(AOI), *WINDOW, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and bucket.url in lines[0], err
    assert not out.exists()
    assert not any((tmp_path / "home").rglob("*.tif"))
