"""``glaviz batch`` scenes given as a region and a year: acquired, mapped and merged, end to end.

Two regions × two years, from local servers: the recorded Earth Search item of tile 27VWK
(6 February 2024) served by tests/stac_server.py, and tiny JPEG 2000 granules at its bucket
paths served by tests/range_server.py. The recordings hold one L1C date, so the 2023 scenes
search the same catalogue and get that granule a year earlier: the same search result with its
date and paths moved by a year (no catalogue JSON is made up), with its own files in the bucket.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import geopandas as gpd
import pytest

from glaviz.acquire import search, sources
from glaviz.acquire.granule import Granule
from glaviz.acquire.search import SearchRequest
from glaviz.batch import run_batch
from tests.range_server import range_server
from tests.s2_granules import write_for_granule
from tests.stac_server import stac_server
from tests.test_acquire_e2e import AOI, SECOND_AOI, _spec_around

REGIONS = {"west": AOI, "east": SECOND_AOI}
YEARS = (2023, 2024)


def _a_year_earlier(granule: Granule) -> Granule:
    def moved(text: str) -> str:
        return text.replace("2024", "2023")

    return replace(
        granule,
        item_id=moved(granule.item_id),
        sensed=granule.sensed.replace(year=2023),
        bands={band: moved(href) for band, href in granule.bands.items()},
        metadata=moved(granule.metadata or ""),
        cloud_mask=moved(granule.cloud_mask or ""),
    )


def _job(tmp_path: Path) -> Path:
    lines = ['output = "out"', "", "[deploy]", 'weights = "demo"', ""]
    lines += ["[acquire]", 'season = "02-01/02-28"', ""]
    for name, box in REGIONS.items():
        for year in YEARS:
            lines += ["[[scene]]", f'id = "{name}-{year}"', f"bbox = {list(box)}", f"year = {year}"]
            lines.append("")
    job = tmp_path / "job.toml"
    job.write_text("\n".join(lines))
    return job


def test_two_regions_by_two_years_acquire_map_and_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (sources.L2A_BASE_ENV, sources.CDSE_ACCESS_KEY_ENV, sources.CDSE_SECRET_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLAVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with stac_server("landing", "l1c", "dem30") as stac, range_server(tmp_path / "b") as files:
        monkeypatch.setenv(sources.STAC_URL_ENV, stac.url)
        monkeypatch.setenv(sources.L1C_BASE_ENV, files.url)
        monkeypatch.setenv(sources.DEM_BASE_ENV, files.url)
        union = (AOI[0], min(AOI[1], SECOND_AOI[1]), SECOND_AOI[2], AOI[3])
        recorded = SearchRequest(
            union, date(2024, 2, 1), date(2024, 2, 28), 20.0, "earth-search", "l1c"
        )
        (granule,) = search.search_granules(recorded)
        spec = _spec_around(union, granule.epsg)
        write_for_granule(files.root, granule, spec, files.url)
        earlier = _a_year_earlier(granule)
        write_for_granule(
            files.root, earlier, replace(spec, sensed=datetime(2023, 2, 6), seed=1), files.url
        )

        real = search.search_granules

        def by_year(request: SearchRequest, **kwargs: object) -> list[Granule]:
            year = request.start.year
            moved = replace(request, start=request.start.replace(year=2024),
                            end=request.end.replace(year=2024))  # fmt: skip
            found = real(moved, **kwargs)  # type: ignore[arg-type]
            return found if year == 2024 else [_a_year_earlier(g) for g in found]

        monkeypatch.setattr(search, "search_granules", by_year)
        job = _job(tmp_path)
        result = run_batch(job, shard=(0, 1))
        assert result.ok, [o.error for o in result.outcomes]

        out = tmp_path / "out"
        with open(out / "summary.csv", newline="") as fh:
            rows = {r["scene_id"]: r for r in csv.DictReader(fh)}
        assert set(rows) == {f"{n}-{y}" for n in REGIONS for y in YEARS}
        for scene_id, row in rows.items():
            year = scene_id.split("-")[1]
            assert row["status"] == "done"
            assert row["date"] == row["acquired_dates"] == f"{year}-02-06"
            assert float(row["coverage"]) == 1.0 and 0 <= float(row["cloud_in_aoi"]) < 1
            record = json.loads((out / scene_id / "acquire" / "acquire.json").read_text())
            (scene,) = record["scenes"]
            assert scene["granules"][0]["item_id"].startswith(f"S2B_27VWK_{year}0206")
            assert (out / scene_id / "outlines.tif").is_file()

        merged = gpd.read_file(out / "outlines.gpkg")
        assert set(merged["date"].astype(str)) <= {"2023-02-06", "2024-02-06"}
        assert set(merged["scene_id"]) <= set(rows)

        # Everything is done: a second run skips every scene and asks the bucket for nothing.
        files.reset_counts()
        again = run_batch(job, shard=(0, 1))
        assert again.ok and {o.status for o in again.outcomes} == {"skipped"}
        assert {o.date for o in again.outcomes} == {"2023-02-06", "2024-02-06"}
        assert sum(files.requests.values()) == 0


def _load(tmp_path: Path, text: str) -> tuple[object, list]:
    from glaviz.config.batch import load_job

    job = tmp_path / "job.toml"
    job.write_text(text)
    return load_job(job)


def test_a_shared_region_with_one_scene_per_year(tmp_path: Path) -> None:
    job, scenes = _load(
        tmp_path,
        'output = "out"\n[acquire]\nbbox = [7.95, 46.48, 8.10, 46.58]\nseason = "08-15/09-30"\n'
        'max_cloud = 40\n[[scene]]\nid = "a-2019"\nyear = 2019\n'
        '[[scene]]\nid = "a-2020"\ndates = "2020-07-01/2020-07-31"\n'
        '[[scene]]\nid = "given"\nstack = "s.tif"\n',
    )
    configs = {s.id: job.acquire_config(s, output=tmp_path / s.id) for s in scenes}
    first, second, given = configs["a-2019"], configs["a-2020"], configs["given"]
    assert first is not None and second is not None and given is None
    assert (first.year, first.season, first.max_cloud) == (2019, "08-15/09-30", 40)
    assert first.bbox == (7.95, 46.48, 8.10, 46.58) and first.overwrite
    assert (second.dates, second.season, second.year) == ("2020-07-01/2020-07-31", None, None)
    assert job.features_config(scenes[0], output=tmp_path / "x.tif") is None


def test_a_manifest_row_gives_its_region_as_one_cell(tmp_path: Path) -> None:
    (tmp_path / "scenes.csv").write_text('id,bbox,year\nv-2021,"7.9,46.4,8.0,46.5",2021\n')
    job, (scene,) = _load(tmp_path, 'output = "out"\nmanifest = "scenes.csv"\n')
    config = job.acquire_config(scene, output=tmp_path / "v")
    assert config is not None and config.bbox == (7.9, 46.4, 8.0, 46.5) and config.year == 2021


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[scene]]\nid = "x"\nbbox = [1, 2, 3, 4]\nyear = 2020\nstack = "s.tif"\n',
         "both a region to acquire and a stack"),
        ('[acquire]\noutput = "o"\n[[scene]]\nid = "x"\nstack = "s.tif"\n',
         "output cannot be set here"),
        ('[acquire]\nclouds = 3\n[[scene]]\nid = "x"\nstack = "s.tif"\n', "unknown option clouds"),
    ],
)  # fmt: skip
def test_region_scenes_refuse_what_cannot_work(tmp_path: Path, text: str, message: str) -> None:
    from glaviz.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, 'output = "out"\n' + text)


def test_a_region_without_a_window_fails_the_scene_at_planning(tmp_path: Path) -> None:
    from glaviz.errors import ConfigError

    job, (scene,) = _load(tmp_path, 'output = "out"\n[[scene]]\nid = "x"\nbbox = [1, 2, 3, 4]\n')
    with pytest.raises(ConfigError, match=r"scene 'x'.*exactly one time window"):
        job.acquire_config(scene, output=tmp_path / "x")
