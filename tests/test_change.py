"""glaviz change on generated outlines with answers known in advance.

Every scene is a few dozen 10 m pixels in UTM 32N, so the areas are known: the geodesic area of
a pixel block is computed here independently (pyproj on the block's corners) and compared with
what the engine measured pixel by pixel.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from glaviz import api
from glaviz.cli.app import main
from glaviz.config import ChangeConfig
from tests.helpers import error_line, write_raster

CRS = "EPSG:32632"
ORIGIN = (400000.0, 5100000.0)
PX = 10.0
T0, T1 = "2017-08-01", "2023-08-20"
YEARS = (dt.date.fromisoformat(T1) - dt.date.fromisoformat(T0)).days / 365.25


def outlines(path: Path, mask: np.ndarray, *, crs: str = CRS, transform=None) -> Path:
    """An outline raster like deploy's: uint8 0/1, 255 = unobserved."""
    transform = transform or from_origin(*ORIGIN, PX, PX)
    return write_raster(path, mask.astype(np.uint8), crs, transform, nodata=255)


def block_area_km2(rows: slice, cols: slice) -> float:
    """Geodesic area of a block of pixels of the test grid, from its four corners."""
    from pyproj import Geod, Transformer

    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    x0, x1 = ORIGIN[0] + cols.start * PX, ORIGIN[0] + cols.stop * PX
    y0, y1 = ORIGIN[1] - rows.start * PX, ORIGIN[1] - rows.stop * PX
    # Densified edges: the pixels' edges are straight in the projection, not geodesics.
    xs = [*np.linspace(x0, x1, 50), *[x1] * 50, *np.linspace(x1, x0, 50), *[x0] * 50]
    ys = [*[y0] * 50, *np.linspace(y0, y1, 50), *[y1] * 50, *np.linspace(y1, y0, 50)]
    lon, lat = to_lonlat.transform(xs, ys)
    area, _ = Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)
    return abs(area) / 1e6


def run(tmp_path: Path, inputs: list[Path], dates: list[str] | None = None, **options):
    dates = dates if dates is not None else [f"{inputs[0]}={T0}", f"{inputs[1]}={T1}"]
    config = ChangeConfig(inputs=inputs, dates=dates, output=tmp_path / "change", **options)
    return api.change(config)


def glacier_rows(result) -> list[dict]:
    return result.table.drop(columns="geometry").to_dict("records")


def codes(result, band: int = 1) -> np.ndarray:
    with rasterio.open(result.output / "change.tif") as src:
        return src.read(band)


# --------------------------------------------------------------------------------------------------
# Exact answers


def test_retreat_by_known_pixels_is_that_loss_and_rate(tmp_path: Path) -> None:
    t0 = np.zeros((48, 40), bool)
    t0[4:40, 10:22] = True  # a 36 × 12 px glacier, tongue down
    t1 = t0.copy()
    t1[33:40, 10:22] = False  # the tongue retreats by 7 rows: 84 pixels
    result = run(tmp_path, [outlines(tmp_path / "a.tif", t0), outlines(tmp_path / "b.tif", t1)])
    (row,) = glacier_rows(result)
    lost = block_area_km2(slice(33, 40), slice(10, 22))
    assert row["match"] == "same"
    assert int((codes(result) == 2).sum()) == 84
    assert row["area_t0_km2"] == pytest.approx(block_area_km2(slice(4, 40), slice(10, 22)), 1e-7)
    assert row["change_km2"] == pytest.approx(-lost, rel=1e-7)
    assert row["rate_km2_yr"] == pytest.approx(row["change_km2"] / YEARS, rel=1e-12)
    assert row["change_pct"] == pytest.approx(-100 * 7 / 36, rel=1e-6)
    assert row["rate_pct_yr"] == pytest.approx(row["change_pct"] / YEARS, rel=1e-12)
    assert row["unobserved_km2"] == 0.0
    assert len(result.totals) == 1 and result.totals["level"].tolist() == ["total"]


def test_a_split_is_recorded_with_both_pieces(tmp_path: Path) -> None:
    t0 = np.zeros((40, 40), bool)
    t0[5:35, 10:20] = True
    t1 = t0.copy()
    t1[18:22, 10:20] = False  # the middle melts: two glaciers of 13 and 13 rows
    result = run(tmp_path, [outlines(tmp_path / "a.tif", t0), outlines(tmp_path / "b.tif", t1)])
    (row,) = glacier_rows(result)
    assert row["match"] == "split"
    assert (row["n_t0"], row["n_t1"]) == (1, 2)
    assert row["id_t1"] == "1;2"
    pieces = block_area_km2(slice(5, 18), slice(10, 20)) + block_area_km2(
        slice(22, 35), slice(10, 20)
    )
    assert row["area_t1_km2"] == pytest.approx(pieces, rel=1e-7)
    assert row["change_km2"] == pytest.approx(-block_area_km2(slice(18, 22), slice(10, 20)), 1e-7)


def test_merge_vanished_and_new_are_recorded(tmp_path: Path) -> None:
    t0 = np.zeros((40, 60), bool)
    t0[5:15, 5:15] = True
    t0[5:15, 17:27] = True  # two glaciers that will merge
    t0[25:30, 40:45] = True  # one that will vanish
    t1 = t0.copy()
    t1[5:15, 15:17] = True
    t1[25:30, 40:45] = False
    t1[30:35, 5:10] = True  # a new one
    result = run(tmp_path, [outlines(tmp_path / "a.tif", t0), outlines(tmp_path / "b.tif", t1)])
    kinds = sorted(r["match"] for r in glacier_rows(result))
    assert kinds == ["merge", "new", "vanished"]
    vanished = next(r for r in glacier_rows(result) if r["match"] == "vanished")
    assert vanished["area_t1_km2"] == 0 and vanished["id_t1"] == ""


def test_a_cloud_at_t1_is_unobserved_not_loss(tmp_path: Path) -> None:
    t0 = np.zeros((40, 40), np.uint8)
    t0[5:35, 10:20] = 1
    t1 = t0.copy()
    t1[25:40, 0:40] = 255  # cloud over the glacier's lower part (and beyond)
    result = run(tmp_path, [outlines(tmp_path / "a.tif", t0), outlines(tmp_path / "b.tif", t1)])
    (row,) = glacier_rows(result)
    assert row["change_km2"] == 0.0
    assert row["unobserved_km2"] == pytest.approx(
        block_area_km2(slice(25, 35), slice(10, 20)), 1e-7
    )
    assert row["area_t0_km2"] == pytest.approx(block_area_km2(slice(5, 25), slice(10, 20)), 1e-7)
    tif = codes(result)
    assert not (tif == 2).any() and (tif[25:40] == 255).all()
    import geopandas as gpd

    assert len(gpd.read_file(result.output / "change.gpkg", layer="lost")) == 0
    unobserved = gpd.read_file(result.output / "change.gpkg", layer="unobserved")
    assert unobserved["area_km2"].sum() == pytest.approx(row["unobserved_km2"], rel=1e-6)


def test_two_crs_give_the_one_crs_result_within_a_pixel_of_boundary(tmp_path: Path) -> None:
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    t0 = np.zeros((60, 60), np.uint8)
    t0[10:50, 15:40] = 1
    t1 = t0.copy()
    t1[38:50, 15:40] = 0
    same = run(
        tmp_path / "one", [outlines(tmp_path / "a.tif", t0), outlines(tmp_path / "b.tif", t1)]
    )
    # t1 on the next UTM zone (33N), at the same 10 m pixel size
    src_transform = from_origin(*ORIGIN, PX, PX)
    dst_transform, w, h = calculate_default_transform(
        CRS,
        "EPSG:32633",
        60,
        60,
        *rasterio.transform.array_bounds(60, 60, src_transform),
        resolution=PX,
    )
    moved = np.full((h, w), 255, np.uint8)
    reproject(
        t1,
        moved,
        src_transform=src_transform,
        src_crs=CRS,
        dst_transform=dst_transform,
        dst_crs="EPSG:32633",
        src_nodata=255,
        dst_nodata=255,
        resampling=Resampling.nearest,
    )
    b = write_raster(tmp_path / "b33.tif", moved, "EPSG:32633", dst_transform, nodata=255)
    other = run(tmp_path / "two", [tmp_path / "a.tif", b], dates=[f"a.tif={T0}", f"b33.tif={T1}"])
    (r1,) = glacier_rows(same)
    (r2,) = glacier_rows(other)
    pixel_km2 = PX * PX / 1e6
    boundary_px = 2 * (40 + 25)  # the glacier's outline at t0, in pixels
    assert abs(r1["change_km2"] - r2["change_km2"]) <= boundary_px * pixel_km2
    assert abs(r1["area_t1_km2"] - r2["area_t1_km2"]) <= boundary_px * pixel_km2
    assert r2["match"] == "same"


def test_buffer_uncertainty_is_perimeter_times_buffer_on_a_square(tmp_path: Path) -> None:
    square = np.zeros((30, 30), bool)
    square[10:20, 10:20] = True  # 10 × 10 px, unchanged
    result = run(
        tmp_path,
        [outlines(tmp_path / "a.tif", square), outlines(tmp_path / "b.tif", square)],
        buffer_px=0.5,
        uncertainty="buffer",
    )
    (row,) = glacier_rows(result)
    per_date = (4 * 10 * PX) * 0.5 * PX / 1e6  # perimeter × buffer × pixel size
    assert row["uncertainty_buffer_km2"] == pytest.approx(math.hypot(per_date, per_date), 1e-12)
    assert math.isnan(row["uncertainty_confidence_km2"])
    assert row["change_km2"] == 0.0 and not row["significant"]


def deploy_folder(folder: Path, mask: np.ndarray, confidence: np.ndarray) -> Path:
    """A folder shaped like deploy's: outlines.tif, confidence.tif, run.json (calibrated)."""
    folder.mkdir(parents=True)
    outlines(folder / "outlines.tif", mask)
    transform = from_origin(*ORIGIN, PX, PX)
    write_raster(folder / "confidence.tif", confidence.astype(np.float32), CRS, transform)
    (folder / "run.json").write_text(json.dumps({"settings": {"calibration": "cal.json"}}))
    return folder


def test_confidence_uncertainty_is_the_hand_count(tmp_path: Path) -> None:
    mask = np.zeros((30, 30), np.uint8)
    mask[10:20, 10:20] = 1
    c0 = np.full((30, 30), 0.9, np.float32)
    c1 = c0.copy()
    c0[12, 12] = 0.2  # inside: counts
    c1[12, 12] = 0.3  # the same pixel at t1: counts once
    c0[15, 9] = 0.4  # touching the glacier's edge: counts
    c1[9, 9] = 0.1  # touching its corner diagonally: counts
    c1[14, 15] = 0.49  # inside, low only at t1: counts
    c0[25, 25] = 0.1  # far from the glacier: not counted
    c1[15, 15] = 0.5  # not below 0.5: not counted
    m1 = mask.copy()
    m1[18, 18] = 255  # low but unobserved at t1: not counted
    c0[18, 18] = 0.1
    a = deploy_folder(tmp_path / "a", mask, c0)
    b = deploy_folder(tmp_path / "b", m1, c1)
    result = run(tmp_path, [a, b])
    (row,) = glacier_rows(result)
    pixel = block_area_km2(slice(12, 13), slice(12, 13))
    assert row["uncertainty_confidence_km2"] == pytest.approx(4 * pixel, rel=1e-6)
    record = json.loads((result.output / "run.json").read_text())
    assert [d["confidence_calibrated"] for d in record["dates"]] == [True, True]


def test_reference_ids_match_inventories_and_name_the_column(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    def inventory(path: Path, date: str, boxes: dict[str, tuple]) -> Path:
        frame = gpd.GeoDataFrame(
            {
                "glaviz_id": list(range(1, len(boxes) + 1)),
                "RGIId": list(boxes),
                "complex_id": [1] * len(boxes),
                "date": [date] * len(boxes),
            },
            geometry=[box(*b) for b in boxes.values()],
            crs=CRS,
        )
        frame.to_file(path, layer="glaciers", driver="GPKG")
        return path

    x, y = ORIGIN[0], ORIGIN[1] - 400
    a = inventory(
        tmp_path / "a.gpkg",
        T0,
        {"RGI-1": (x, y, x + 100, y + 200), "RGI-2": (x + 100, y, x + 200, y + 200)},
    )
    # RGI-1 shrinks to its upper half; RGI-2 grows into RGI-1's former lower part
    b = inventory(
        tmp_path / "b.gpkg",
        T1,
        {"RGI-2": (x, y, x + 200, y + 100), "RGI-1": (x, y + 100, x + 100, y + 200)},
    )
    result = run(tmp_path, [a, b], dates=[])
    rows = {r["RGIId"]: r for r in glacier_rows(result)}
    assert set(rows) == {"RGI-1", "RGI-2"}
    assert all(r["match"] == "same" for r in rows.values())
    assert rows["RGI-1"]["change_km2"] == pytest.approx(-0.01, rel=2e-3)  # geodesic, not planar
    # the same planar area elsewhere: only the geodesic scale differs
    assert rows["RGI-2"]["change_km2"] == pytest.approx(0.0, abs=1e-7)
    assert {"complex", "total"} <= set(result.totals["level"])
    with open(result.output / "change.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header.index("RGIId") == header.index("id_t1") + 1


# --------------------------------------------------------------------------------------------------
# Refusals: one Error line, the right exit code, nothing written


def test_refusals_write_nothing(tmp_path: Path, capsys) -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    a = outlines(tmp_path / "a.tif", mask)
    b = outlines(tmp_path / "b.tif", mask)
    far = outlines(
        tmp_path / "far.tif", mask, transform=from_origin(ORIGIN[0] + 50_000, ORIGIN[1], PX, PX)
    )
    out = tmp_path / "out"
    cases = [
        ([str(a), str(b), "--date", f"a.tif={T0}"], 2, "has no date"),
        ([str(a), "--date", f"a.tif={T0}"], 2, "two dates at least"),
        ([str(a), str(far), "--date", f"a.tif={T0}", "--date", f"far.tif={T1}"], 1, "overlap"),
        ([str(a), str(b), "--date", f"a.tif={T0}", "--date", f"b.tif={T0}"], 2, "both have"),
        ([str(a), str(b), "--date", f"a.tif={T0}", "--date", "b.tif=2023-13-01"], 2, "not a date"),
    ]
    for argv, code, words in cases:
        assert main(["change", *argv, "-o", str(out)]) == code, argv
        line = error_line(capsys)
        assert words in line, line
        assert not out.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "far.tif"]


def test_existing_output_is_exit_3_and_skip_existing_skips(tmp_path: Path, capsys) -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    a = outlines(tmp_path / "a.tif", mask)
    b = outlines(tmp_path / "b.tif", mask)
    argv = ["change", str(a), str(b), "--date", f"a.tif={T0}", "--date", f"b.tif={T1}"]
    argv += ["-o", str(tmp_path / "out")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 3
    assert "--overwrite" in error_line(capsys)
    assert main([*argv, "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.out + captured.err


# --------------------------------------------------------------------------------------------------
# Batch roots, reference units, the notebook API


def test_batch_root_mosaics_the_scenes_of_one_date(tmp_path: Path) -> None:
    t0 = np.zeros((30, 40), np.uint8)
    t0[5:25, 8:32] = 1  # one glacier across the two scenes of the first date
    t1 = t0.copy()
    t1[20:25, 8:32] = 0
    root = tmp_path / "batch"
    scenes = {
        "west": (t0[:, :20], ORIGIN[0], T0),
        "east": (t0[:, 20:], ORIGIN[0] + 20 * PX, T0),
        "later": (t1, ORIGIN[0], T1),
    }
    for sid, (mask, x0, _) in scenes.items():
        (root / sid).mkdir(parents=True)
        outlines(root / sid / "outlines.tif", mask, transform=from_origin(x0, ORIGIN[1], PX, PX))
    lines = ["scene_id,status,date"] + [f"{s},done,{d}" for s, (_, _, d) in scenes.items()]
    (root / "summary.csv").write_text("\n".join(lines) + "\n")
    mosaic = run(tmp_path / "m", [root], dates=[])
    whole = run(
        tmp_path / "w", [outlines(tmp_path / "a.tif", t0), outlines(tmp_path / "b.tif", t1)]
    )
    (r_mosaic,) = glacier_rows(mosaic)
    (r_whole,) = glacier_rows(whole)
    for name in ("area_t0_km2", "area_t1_km2", "change_km2", "uncertainty_buffer_km2"):
        assert r_mosaic[name] == pytest.approx(r_whole[name], rel=1e-12), name
    record = json.loads((mosaic.output / "run.json").read_text())
    assert (record["grid"]["width"], record["grid"]["height"]) == (40, 30)
    assert len(record["dates"][0]["files"]) == 2


def test_reference_glaciers_are_fixed_units_at_every_date(tmp_path: Path) -> None:
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    t0 = np.zeros((40, 40), np.uint8)
    t0[5:35, 5:25] = 1  # one complex over two reference glaciers (left, right of x = 15 px)
    t0[2:4, 30:38] = 1  # ice outside the reference
    t1 = t0.copy()
    t1[25:35, 15:25] = 0  # the right glacier loses its tongue
    x, y = ORIGIN
    reference = gpd.GeoDataFrame(
        {"RGIId": ["RGI-L", "RGI-R"], "o1region": ["11", "11"]},
        geometry=[
            box(x + 0 * PX, y - 40 * PX, x + 15 * PX, y),
            box(x + 15 * PX, y - 40 * PX, x + 28 * PX, y),
        ],
        crs=CRS,
    )
    reference.to_file(tmp_path / "rgi.gpkg", driver="GPKG")
    result = run(
        tmp_path,
        [outlines(tmp_path / "a.tif", t0), outlines(tmp_path / "b.tif", t1)],
        reference=tmp_path / "rgi.gpkg",
    )
    rows = {r["id_t0"]: r for r in glacier_rows(result)}
    assert set(rows) == {"RGI-L", "RGI-R", "new-1"}
    assert rows["RGI-L"]["change_km2"] == 0.0 and rows["RGI-L"]["RGIId"] == "RGI-L"
    assert rows["RGI-R"]["change_km2"] == pytest.approx(
        -block_area_km2(slice(25, 35), slice(15, 25)), rel=1e-7
    )
    assert pd.isna(rows["new-1"]["RGIId"])  # ice outside every reference glacier
    assert {r["match"] for r in rows.values()} == {"same"}
    regions = result.totals[result.totals["level"] == "region"]
    assert regions["unit"].tolist() == ["11"]
    assert regions["change_km2"].iloc[0] == pytest.approx(rows["RGI-R"]["change_km2"], rel=1e-12)


def test_the_notebook_api_returns_the_table_as_a_geodataframe(tmp_path: Path) -> None:
    import geopandas as gpd

    import glaviz

    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    config = glaviz.ChangeConfig(
        inputs=[outlines(tmp_path / "a.tif", mask), outlines(tmp_path / "b.tif", mask)],
        dates=[f"a.tif={T0}", f"b.tif={T1}"],
        output=tmp_path / "out",
    )
    result = glaviz.change(config)
    assert isinstance(result.table, gpd.GeoDataFrame) and len(result.table) == 1
    # importing the glaviz.change package (the engine does) must not break the next call
    import glaviz.change.run

    again = glaviz.change(config.model_copy(update={"overwrite": True}))
    assert again.table.drop(columns="geometry").equals(result.table.drop(columns="geometry"))
    assert result.to_json()["dates"] == [T0, T1]
    assert "wrote" in result.summary()


def test_a_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    import glaviz.change.figure

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(glaviz.change.figure, "write_png", broken)
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    a, b = outlines(tmp_path / "a.tif", mask), outlines(tmp_path / "b.tif", mask)
    out = tmp_path / "deep" / "out"
    argv = ["change", str(a), str(b), "--date", f"a.tif={T0}", "--date", f"b.tif={T1}"]
    assert main([*argv, "-o", str(out)]) == 1
    assert not (tmp_path / "deep").exists()


def test_min_area_leaves_out_small_glaciers_and_their_polygons(tmp_path: Path) -> None:
    import geopandas as gpd

    t0 = np.zeros((40, 40), np.uint8)
    t0[5:30, 5:20] = 1  # 0.0375 km²
    t0[5:8, 30:33] = 1  # 9 px, 0.0009 km²: left out
    t1 = t0.copy()
    t1[25:30, 5:20] = 0
    t1[5:8, 30:33] = 0
    result = run(
        tmp_path,
        [outlines(tmp_path / "a.tif", t0), outlines(tmp_path / "b.tif", t1)],
        min_area_km2=0.01,
    )
    assert [r["match"] for r in glacier_rows(result)] == ["same"]
    lost = gpd.read_file(result.output / "change.gpkg", layer="lost")
    assert lost["unit"].tolist() == [glacier_rows(result)[0]["unit"]]


def test_geographic_earliest_input_is_compared_in_utm(tmp_path: Path) -> None:
    t0 = np.zeros((40, 40), np.uint8)
    t0[5:35, 10:30] = 1
    t1 = t0.copy()
    t1[25:35, 10:30] = 0
    lonlat = from_origin(7.5, 46.5, 0.0002, 0.00014)  # about 15 m pixels in the Alps
    a = outlines(tmp_path / "a.tif", t0, crs="EPSG:4326", transform=lonlat)
    b = outlines(tmp_path / "b.tif", t1, crs="EPSG:4326", transform=lonlat)
    result = run(tmp_path, [a, b])
    (row,) = glacier_rows(result)
    record = json.loads((result.output / "run.json").read_text())
    assert "32632" in record["grid"]["crs"]
    assert row["change_pct"] == pytest.approx(-100 / 3, abs=4)  # within the warp's pixels
