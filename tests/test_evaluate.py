"""glaviz evaluate: predictions files per region/subregion, and maps against raster/vector truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from glaviz.cli.app import main
from glaviz.errors import InputError
from glaviz.evaluation import Counts, PixelArea, evaluate_predictions, evaluate_rasters
from glaviz.evaluation import predictions as predictions_module
from glaviz.evaluation import rasters as rasters_module
from tests.helpers import error_line

# ----------------------------------------------------------------------------- helpers

UTM32 = "EPSG:32632"
ORIGIN = (400000.0, 5100000.0)
PIXEL = 10.0


def write_predictions(path: Path, tiles: list[dict], *, with_true: bool = True) -> Path:
    """A predictions file in the layout of glaviz predict: prob, pred, true, region attributes."""
    with h5py.File(path, "w") as file:
        for tile in tiles:
            group = file.create_group(tile["name"])
            group.create_dataset("prob", data=tile["prob"].astype(np.float32))
            if "pred" in tile:
                group.create_dataset("pred", data=tile["pred"].astype(np.uint8))
            if with_true:
                group.create_dataset("true", data=tile["true"].astype(np.uint8))
            group.attrs["region"] = tile["region"]
            group.attrs["subregion"] = tile["subregion"]
            group.attrs["tile_name"] = tile["name"]
    return path


def random_tiles(seed: int = 0) -> list[dict]:
    """Several regions and subregions, uneven tile shapes, some 255 (excluded) pixels."""
    rng = np.random.default_rng(seed)
    layout = {"ALP": ["ALP1", "ALP2"], "HMA": ["HMA1", "HMA2", "HMA3"], "SVAL": ["SVAL"]}
    tiles = []
    for region, subregions in layout.items():
        for subregion in subregions:
            for index in range(2):
                h, w = int(rng.integers(8, 40)), int(rng.integers(8, 40))
                true = (rng.random((h, w)) < rng.uniform(0.1, 0.7)).astype(np.uint8)
                flip = rng.random((h, w)) < 0.2
                pred = np.where(flip, 1 - true, true).astype(np.uint8)
                true[rng.random((h, w)) < 0.03] = 255
                pred[rng.random((h, w)) < 0.03] = 255
                p1 = rng.random((h, w))
                tiles.append(
                    {
                        "name": f"{subregion}-{index}",
                        "region": region,
                        "subregion": subregion,
                        "prob": np.stack([1 - p1, p1], axis=-1),
                        "pred": pred,
                        "true": true,
                    }
                )
    return tiles


def numpy_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float | int | None]:
    """The published evaluate.py formulas on flat arrays, undefined ratios as None."""
    tp = int(np.sum((pred == 1) & (true == 1)))
    tn = int(np.sum((pred == 0) & (true == 0)))
    fp = int(np.sum((pred == 1) & (true == 0)))
    fn = int(np.sum((pred == 0) & (true == 1)))

    def div(a: float, b: float) -> float | None:
        return a / b if b else None

    precision, recall = div(tp, tp + fp), div(tp, tp + fn)
    if precision is not None and recall is not None and precision + recall:
        f1 = 2 * precision * recall / (precision + recall)
    else:  # published: NaN; glaviz (documented): 0.0 whenever any glacier is involved (tp is 0)
        f1 = 0.0 if tp + fp + fn else None
    return {
        "iou": div(tp, tp + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": div(tp + tn, tp + tn + fp + fn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def assert_block_equal(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def write_raster(
    path: Path,
    array: np.ndarray,
    *,
    crs: str | None = UTM32,
    transform=None,
    nodata: float | None = 255,
) -> Path:
    transform = transform or from_origin(*ORIGIN, PIXEL, PIXEL)
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return path


def glacier_blobs(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth random glacier-like 0/1 blobs (a low-pass filtered noise field, thresholded)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal(shape), sigma=4)
    return (field > np.quantile(field, 0.6)).astype(np.uint8)


def polygonise(raster: Path, out: Path, *, to_crs: str | None = None) -> Path:
    """Glacier polygons of a 0/1 raster (rasterio.features.shapes), written with geopandas."""
    import geopandas
    from rasterio.features import shapes
    from shapely.geometry import shape

    with rasterio.open(raster) as src:
        band = src.read(1)
        polygons = [
            shape(geom)
            for geom, value in shapes(band, mask=band == 1, transform=src.transform)
            if value == 1
        ]
        frame = geopandas.GeoDataFrame({"id": range(len(polygons))}, geometry=polygons)
        frame = frame.set_crs(src.crs.to_wkt())
    if to_crs is not None:
        frame = frame.to_crs(to_crs)
    frame.to_file(out)
    return out


# ----------------------------------------------------------------------------- metrics


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=0, max_value=2**31 - 1),
)
def test_counts_equal_the_published_masks(h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=(h, w))
    true = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=(h, w))
    got = Counts.from_arrays(pred, true).to_dict()
    assert_block_equal(got, numpy_scores(pred, true))


def test_undefined_scores_are_null_not_invented() -> None:
    background_only = Counts(tn=7)
    assert background_only.iou is None and background_only.f1 is None
    assert background_only.precision is None and background_only.recall is None
    assert background_only.accuracy == 1.0
    assert Counts().accuracy is None
    missed = Counts(fn=3, tn=1)  # glacier in the truth, none predicted
    assert missed.iou == 0.0 and missed.recall == 0.0 and missed.f1 == 0.0
    assert missed.precision is None
    assert json.loads(json.dumps(background_only.to_dict()))["iou"] is None


# ----------------------------------------------------------------------------- predictions file


def test_predictions_file_equals_independent_numpy(tmp_path: Path, monkeypatch) -> None:
    tiles = random_tiles(seed=3)
    path = write_predictions(tmp_path / "pred.h5", tiles)
    # Small blocks: every tile is read in several row blocks, as big tiles would be.
    monkeypatch.setattr(predictions_module, "BLOCK_PIXELS", 64)
    result = evaluate_predictions(predictions=path).to_dict()

    def flat(select) -> tuple[np.ndarray, np.ndarray]:
        chosen = [t for t in tiles if select(t)]
        return (
            np.concatenate([t["pred"].ravel() for t in chosen]),
            np.concatenate([t["true"].ravel() for t in chosen]),
        )

    assert_block_equal(result["total"], numpy_scores(*flat(lambda t: True)))
    regions = sorted({t["region"] for t in tiles})
    subregions = sorted({t["subregion"] for t in tiles})
    assert list(result["regions"]) == regions and list(result["subregions"]) == subregions
    for name in regions:
        assert_block_equal(
            result["regions"][name], numpy_scores(*flat(lambda t, n=name: t["region"] == n))
        )
    for name in subregions:
        assert_block_equal(
            result["subregions"][name],
            numpy_scores(*flat(lambda t, n=name: t["subregion"] == n)),
        )


def test_cli_writes_the_design_json_and_a_table(tmp_path: Path, capsys) -> None:
    path = write_predictions(tmp_path / "pred.h5", random_tiles(seed=1))
    out = tmp_path / "scores" / "eval.json"
    assert main(["evaluate", str(path), "--scores", str(out)]) == 0
    stdout = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data) == {"total", "regions", "subregions"}
    keys = {"iou", "precision", "recall", "f1", "accuracy", "tp", "fp", "fn", "tn"}
    assert set(data["total"]) == keys
    assert all(set(block) == keys for block in data["regions"].values())
    # The table lists the total first, then regions, then subregions.
    assert stdout.index("total") < stdout.index("ALP") < stdout.index("ALP1")
    assert stdout.index("region") < stdout.index("subregion")
    assert f"{data['total']['iou']:.4f}" in stdout


def test_json_to_stdout(tmp_path: Path, capsys) -> None:
    path = write_predictions(tmp_path / "pred.h5", random_tiles(seed=2))
    assert main(["evaluate", str(path), "--scores", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == evaluate_predictions(predictions=path).to_dict()["total"]


@pytest.mark.parametrize("spelling", ["--json FILE", "--json=FILE", "--json -"])
def test_old_json_file_spelling_warns_and_still_works(tmp_path: Path, capsys, spelling) -> None:
    """``evaluate … --json FILE`` was the file option before it clashed with the global flag."""
    path = write_predictions(tmp_path / "pred.h5", random_tiles(seed=2))
    out = tmp_path / "scores.json"
    value = "-" if spelling.endswith("-") else str(out)
    old = [f"--json={value}"] if "=" in spelling else ["--json", value]
    assert main(["evaluate", str(path), *old]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("Warning: "), captured.err
    assert "--scores" in warning[0] and "deprecated" in warning[0]
    written = json.loads(captured.out if value == "-" else out.read_text())
    assert written["total"] == evaluate_predictions(predictions=path).to_dict()["total"]
    # -q keeps stderr for errors only.
    assert main(["evaluate", str(path), *old, "--overwrite", "-q"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("where", ["after", "between"])
def test_json_alone_after_evaluate_is_the_global_flag(tmp_path: Path, capsys, where) -> None:
    path = write_predictions(tmp_path / "pred.h5", random_tiles(seed=2))
    argv = ["evaluate", str(path), "--json"] if where == "after" else ["evaluate", "--json", "-q"]
    if where == "between":
        argv.append(str(path))
    assert main(argv) == 0
    captured = capsys.readouterr()
    (line,) = captured.out.splitlines()  # one JSON object, nothing else on stdout
    done = json.loads(line)
    assert done["command"] == "evaluate" and done["status"] == "done" and done["exit_code"] == 0
    assert done["scores"]["total"] == evaluate_predictions(predictions=path).to_dict()["total"]
    assert "Warning" not in captured.err and not list(tmp_path.glob("*.json"))


def test_pred_is_recomputed_from_prob_when_absent(tmp_path: Path) -> None:
    tiles = random_tiles(seed=4)
    for tile in tiles:
        del tile["pred"]
    path = write_predictions(tmp_path / "pred.h5", tiles)
    result = evaluate_predictions(predictions=path).to_dict()
    pred = np.concatenate([(t["prob"][..., 1] > t["prob"][..., 0]).ravel() for t in tiles])
    true = np.concatenate([t["true"].ravel() for t in tiles])
    assert_block_equal(result["total"], numpy_scores(pred.astype(np.uint8), true))


def test_predictions_errors(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "missing.h5")]) == 1
    assert "does not exist" in error_line(capsys)

    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    assert main(["evaluate", str(text)]) == 1
    assert "not an HDF5 file" in error_line(capsys)

    unlabelled = write_predictions(tmp_path / "nolabels.h5", random_tiles(), with_true=False)
    assert main(["evaluate", str(unlabelled)]) == 1
    line = error_line(capsys)
    assert "'true'" in line and "needs the truth" in line

    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    assert main(["evaluate", str(tmp_path / "empty.h5")]) == 1
    assert "no tile groups" in error_line(capsys)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--prediction", "map.tif"],
        ["--truth", "truth.gpkg"],
        ["p.h5", "--prediction", "map.tif", "--truth", "truth.gpkg"],
    ],
)
def test_mode_usage_errors(args: list[str], capsys) -> None:
    assert main(["evaluate", *args]) == 2
    error_line(capsys)


# ----------------------------------------------------------------------------- rasters / vectors


@pytest.fixture
def outlines(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 0/1 outlines raster in UTM 32N with a strip of nodata (255)."""
    band = glacier_blobs((96, 128), seed=5)
    band[:, :6] = 255
    return write_raster(tmp_path / "outlines.tif", band), band


def test_raster_vs_its_own_polygons(outlines, tmp_path: Path, capsys) -> None:
    raster, band = outlines
    gpkg = polygonise(raster, tmp_path / "truth.gpkg")
    out = tmp_path / "eval.json"
    assert (
        main(["evaluate", "--prediction", str(raster), "--truth", str(gpkg), "--scores", str(out)])
        == 0
    )
    data = json.loads(out.read_text())
    assert data["total"]["iou"] >= 0.98
    assert data["total"]["iou"] == 1.0  # same grid, centre rule: the polygons burn back exactly
    glacier_km2 = np.count_nonzero(band == 1) * PIXEL * PIXEL / 1e6
    assert data["areas"]["prediction_km2"] == pytest.approx(glacier_km2)
    assert data["areas"]["truth_km2"] == pytest.approx(glacier_km2)
    assert data["areas"]["difference_km2"] == pytest.approx(0.0, abs=1e-12)
    assert data["pixels"]["excluded"] == np.count_nonzero(band == 255)
    assert data["regions"] == {} and data["subregions"] == {}
    assert "km²" in capsys.readouterr().out


def test_raster_vs_reprojected_geojson(outlines, tmp_path: Path) -> None:
    raster, _ = outlines
    geojson = polygonise(raster, tmp_path / "truth.geojson", to_crs="EPSG:4326")
    result = evaluate_rasters(prediction=raster, truth=geojson)
    assert result.total.iou >= 0.98


def test_block_size_does_not_change_the_result(outlines, tmp_path: Path, monkeypatch) -> None:
    raster, _ = outlines
    gpkg = polygonise(raster, tmp_path / "truth.gpkg", to_crs="EPSG:32633")
    whole = evaluate_rasters(prediction=raster, truth=gpkg).to_dict()
    monkeypatch.setattr(rasters_module, "BLOCK_PIXELS", 1)
    blocks = evaluate_rasters(prediction=raster, truth=gpkg).to_dict()
    areas = blocks.pop("areas")
    assert areas == pytest.approx(whole.pop("areas"), abs=1e-12)
    assert blocks == whole


def test_raster_truth_on_another_grid_is_resampled_nearest(outlines, tmp_path: Path) -> None:
    raster, band = outlines
    # Truth on a larger 10 m grid, shifted by whole pixels, covering all but the last 20 rows.
    rng = np.random.default_rng(9)
    big = (rng.random((120, 150)) < 0.4).astype(np.uint8)
    origin = (ORIGIN[0] - 7 * PIXEL, ORIGIN[1] + 4 * PIXEL)
    truth_tif = write_raster(
        tmp_path / "truth.tif", big[:80], transform=from_origin(*origin, PIXEL, PIXEL), nodata=None
    )
    result = evaluate_rasters(prediction=raster, truth=truth_tif)
    on_grid = big[4 : 4 + 76, 7 : 7 + 128]  # truth rows 4..79 are prediction rows 0..75
    pred = band[:76]
    expected = numpy_scores(pred[pred != 255], on_grid[pred != 255])
    assert_block_equal(result.total.to_dict(), expected)
    assert result.excluded_pixels == np.count_nonzero(band == 255) + np.count_nonzero(
        band[76:] != 255
    )


def test_wrong_crs_label_is_refused(outlines, tmp_path: Path, capsys) -> None:
    import geopandas

    raster, _ = outlines
    gpkg = polygonise(raster, tmp_path / "truth.gpkg")
    mislabelled = geopandas.read_file(gpkg).set_crs("EPSG:32634", allow_override=True)
    mislabelled.to_file(tmp_path / "wrong.gpkg")
    assert (
        main(["evaluate", "--prediction", str(raster), "--truth", str(tmp_path / "wrong.gpkg")])
        == 1
    )
    line = error_line(capsys)
    assert "does not overlap" in line
    assert "EPSG:32632" in line and "EPSG:32634" in line and "Check the CRS" in line

    far = write_raster(
        tmp_path / "far.tif",
        np.ones((10, 10), np.uint8),
        transform=from_origin(ORIGIN[0] + 1e5, ORIGIN[1], PIXEL, PIXEL),
    )
    with pytest.raises(InputError, match="does not overlap"):
        evaluate_rasters(prediction=raster, truth=far)


def test_missing_crs_and_bad_inputs(outlines, tmp_path: Path, capsys) -> None:
    import geopandas
    from shapely.geometry import box

    raster, band = outlines
    no_crs = write_raster(tmp_path / "nocrs.tif", band, crs=None)
    gpkg = polygonise(raster, tmp_path / "truth.gpkg")
    assert main(["evaluate", "--prediction", str(no_crs), "--truth", str(gpkg)]) == 1
    assert "has no CRS" in error_line(capsys)

    geopandas.GeoDataFrame(geometry=[box(*ORIGIN, ORIGIN[0] + 50, ORIGIN[1] + 50)]).to_file(
        tmp_path / "nocrs.gpkg"
    )
    assert (
        main(["evaluate", "--prediction", str(raster), "--truth", str(tmp_path / "nocrs.gpkg")])
        == 1
    )
    assert "has no CRS" in error_line(capsys)

    assert main(["evaluate", "--prediction", str(raster), "--truth", str(tmp_path / "x.gpkg")]) == 1
    assert "does not exist" in error_line(capsys)

    probabilities = write_raster(
        tmp_path / "probs.tif", np.full((20, 20), 0.7, np.float32), nodata=None
    )
    assert main(["evaluate", "--prediction", str(probabilities), "--truth", str(gpkg)]) == 1
    assert "outside 0/1" in error_line(capsys)


def test_pixel_areas() -> None:
    from pyproj import Geod
    from rasterio.crs import CRS
    from rasterio.windows import Window

    projected = PixelArea(CRS.from_string(UTM32), from_origin(*ORIGIN, 10, 10))
    assert projected.window(Window(0, 0, 3, 2)) == pytest.approx(np.full((2, 1), 1e-4))

    step = 0.01
    transform = from_origin(10.0, 61.0, step, step)
    areas = PixelArea(CRS.from_epsg(4326), transform).window(Window(0, 0, 4, 100))
    geod = Geod(ellps="WGS84")
    for row in (0, 50, 99):
        top = 61.0 - row * step
        lons = [10.0, 10.0 + step, 10.0 + step, 10.0]
        lats = [top, top, top - step, top - step]
        exact = abs(geod.polygon_area_perimeter(lons, lats)[0]) / 1e6
        assert areas[row, 0] == pytest.approx(exact, rel=1e-6)
    assert areas[0, 0] < areas[-1, 0]  # pixels grow towards the equator
    assert math.isclose(areas.shape[1], 1)


def test_geographic_map_areas_follow_latitude(tmp_path: Path) -> None:
    from pyproj import Geod

    step = 0.0005
    transform = from_origin(7.0, 46.1, step, step)
    band = glacier_blobs((80, 60), seed=8)
    raster = write_raster(tmp_path / "wgs84.tif", band, crs="EPSG:4326", transform=transform)
    gpkg = polygonise(raster, tmp_path / "truth.gpkg", to_crs=UTM32)
    result = evaluate_rasters(prediction=raster, truth=gpkg)
    assert result.total.iou >= 0.98
    geod = Geod(ellps="WGS84")
    expected = 0.0
    for row, count in enumerate(np.count_nonzero(band == 1, axis=1)):
        top = 46.1 - row * step
        lons = [7.0, 7.0 + step, 7.0 + step, 7.0]
        lats = [top, top, top - step, top - step]
        expected += count * abs(geod.polygon_area_perimeter(lons, lats)[0]) / 1e6
    assert result.areas.prediction_km2 == pytest.approx(expected, rel=1e-6)


def test_an_empty_vector_truth_is_named_as_empty(outlines, tmp_path: Path, capsys) -> None:
    import geopandas as gpd

    raster, _ = outlines
    empty = tmp_path / "truth.gpkg"
    gpd.GeoDataFrame({"id": []}, geometry=[], crs="EPSG:32632").to_file(empty)
    assert main(["evaluate", "--prediction", str(raster), "--truth", str(empty)]) == 1
    line = error_line(capsys)
    assert "holds no outlines" in line and "overlap" not in line and "CRS" not in line
