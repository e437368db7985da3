"""deploy's region of interest: only windows that meet it run, and inside it nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image
from shapely.geometry import Point, box

from glaviz import api
from glaviz.cli.app import main
from glaviz.config import DeployConfig
from glaviz.config.batch import JobConfig, SceneSpec
from glaviz.engine.deploy import deploy
from glaviz.engine.quicklook import NOT_MAPPED_RGB
from glaviz.engine.reader import inspect_stack
from glaviz.engine.roi import load_roi
from glaviz.errors import InputError, OutputExistsError
from glaviz.runs.records import Skipped
from glaviz.util.hashing import sha256_file
from tests.helpers import error_line, write_raster
from tests.test_skip_empty import orbit_edge_and_cloud, read

#: The stack's grid (tests.helpers.write_stack): 10 m pixels from (500000, 5200000), UTM 32N.
X0, Y0, RES, CRS = 500000.0, 5200000.0, 10.0, "EPSG:32632"


def pixel_box(r0: int, c0: int, r1: int, c1: int):
    """The ground area of scene rows r0…r1 and columns c0…c1 (pixel edges)."""
    return box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


def write_vector(path: Path, geometries, crs: str = CRS, layer: str | None = None) -> Path:
    gpd.GeoDataFrame(geometry=list(geometries), crs=crs).to_file(path, layer=layer)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return orbit_edge_and_cloud(tmp_path_factory.mktemp("roi") / "stack.tif")


@pytest.mark.parametrize("rows", [(60, 150), (120, 130)])
def test_inside_the_roi_outputs_equal_the_full_deploy(scene, tmp_path, rows, monkeypatch) -> None:
    """A rectangle in the scene's middle, with smoothing (whose median reaches past the ROI's
    edge): every output inside the ROI equals the full deploy exactly; outside, the outlines
    hold nodata and confidence NaN, counted as not mapped apart from invalid input. The thin
    one leaves the top window row unread (its rows are outside every computed window)."""
    from glaviz.engine.reader import StackReader

    read_rows: list[int] = []
    original = StackReader._read

    def counting(self, start, stop, strips, top):
        read_rows.append(stop - start)
        return original(self, start, stop, strips, top)

    monkeypatch.setattr(StackReader, "_read", counting)
    roi = write_vector(tmp_path / "roi.gpkg", [pixel_box(rows[0], 90, rows[1], 200)])
    outs, rows_read = {}, {}
    for name, extra in (("roi", {"roi": roi}), ("full", {})):
        outs[name] = tmp_path / name
        config = DeployConfig(
            stack=scene, weights="demo", output=outs[name], probabilities=True, smoothing=3, **extra
        )
        read_rows.clear()
        result = deploy(config)
        rows_read[name] = sum(read_rows)
    assert rows_read["full"] == 200
    assert rows_read["roi"] < 200 if rows == (120, 130) else rows_read["roi"] == 200
    inside = np.zeros((200, 260), bool)
    inside[rows[0] : rows[1], 90:200] = True
    for name in ("outlines.tif", "confidence.tif", "probabilities.tif"):
        ours, full = read(outs["roi"] / name), read(outs["full"] / name)
        np.testing.assert_array_equal(ours[:, inside], full[:, inside])
    outlines = read(outs["roi"] / "outlines.tif")[0]
    assert np.all(outlines[~inside] == 255)
    assert ({0, 1} if rows == (60, 150) else {0}) <= set(np.unique(outlines[inside]))
    assert np.isnan(read(outs["roi"] / "confidence.tif")[0][~inside]).all()
    record = json.loads((outs["roi"] / "run.json").read_text())
    full_record = json.loads((outs["full"] / "run.json").read_text())
    assert record["pixels"]["not_mapped"] == int((~inside).sum())
    assert record["pixels"]["invalid_input"] == int(((outlines == 255) & inside).sum())
    assert record["windows_skipped"]["outside_roi"] > 0
    assert record["windows_computed"] < full_record["windows_computed"]
    assert record["settings"]["roi"]["sha256"]["roi.gpkg"]
    assert result.pixels["not_mapped"] == 0  # the last result is the full deploy
    quicklook = np.asarray(Image.open(outs["roi"] / "quicklook.png"))
    assert (quicklook[..., :3] == NOT_MAPPED_RGB).all(axis=-1).sum() > 100


def test_buffer_is_in_metres_and_reference_glaciers_default_to_2000_m(scene, tmp_path) -> None:
    info = inspect_stack(scene)
    centre = Point(X0 + 130 * RES, Y0 - 100 * RES)
    point = write_vector(tmp_path / "point.gpkg", [centre])
    mask = load_roi(DeployConfig(stack=scene, weights="demo", roi=point, roi_buffer=200), info)
    assert mask.inside == pytest.approx(np.pi * 20**2, rel=0.05)  # 200 m = 20 pixels
    # An inventory with a second layer: its glaciers layer is the region, grown by 2000 m.
    inventory = tmp_path / "inventory.gpkg"
    write_vector(inventory, [centre.buffer(50)], layer="glaciers")
    write_vector(inventory, [pixel_box(0, 0, 10, 10)], layer="divides")
    config = DeployConfig(stack=scene, weights="demo", roi_from_reference=inventory)
    assert config.roi_buffer_m == 2000
    mask = load_roi(config, info)
    assert mask.source.layer == "glaciers"
    assert mask.inside == 200 * 260  # 2050 m around the centre covers the 2.6 × 2 km scene
    # In another CRS: reprojected onto the stack's grid first.
    lonlat = write_vector(
        tmp_path / "lonlat.geojson", gpd.GeoSeries([centre], crs=CRS).to_crs(4326), crs="EPSG:4326"
    )
    again = load_roi(DeployConfig(stack=scene, weights="demo", roi=lonlat, roi_buffer=200), info)
    assert abs(again.inside - np.pi * 20**2) < 0.05 * np.pi * 20**2


def test_raster_mask_on_the_stack_grid_is_taken_pixel_for_pixel(scene, tmp_path) -> None:
    from rasterio.transform import from_origin

    mask = np.zeros((200, 260), np.uint8)
    mask[10:20, 30:33] = 1
    mask[150, 250] = 7
    path = write_raster(tmp_path / "mask.tif", mask, CRS, from_origin(X0, Y0, RES, RES), nodata=0)
    roi = load_roi(DeployConfig(stack=scene, weights="demo", roi=path), inspect_stack(scene))
    np.testing.assert_array_equal(roi.rows(0, 200), mask > 0)
    assert roi.source.kind == "raster"


def test_geographic_stack_buffers_in_local_utm(tmp_path) -> None:
    """Degrees are no length: on a lon/lat stack the buffer is drawn in the local UTM zone."""
    from rasterio.transform import from_origin

    from tests.helpers import write_stack

    stack = write_stack(tmp_path / "geo.tif", height=60, width=60, crs="EPSG:4326")
    with rasterio.open(stack, "r+") as ds:
        ds.transform = from_origin(8.0, 47.0, 1e-4, 1e-4)
    centre = Point(8.00305, 46.99695)  # centre of pixel (30, 30)
    point = write_vector(tmp_path / "p.gpkg", [centre], crs="EPSG:4326")
    config = DeployConfig(stack=stack, weights="demo", roi=point, roi_buffer=100)
    roi = load_roi(config, inspect_stack(stack))
    assert roi.source.buffered_in == "EPSG:32632"
    rows = roi.rows(0, 60)
    # 1e-4 degree is 11.1 m north-south and 7.6 m east-west at 47° N
    assert rows[:, 30].sum() == pytest.approx(200 / 11.12, abs=1.5)
    assert rows[30].sum() == pytest.approx(200 / 7.59, abs=1.5)


def test_a_roi_that_misses_the_scene_is_one_error_and_writes_nothing(scene, tmp_path, capsys):
    far = write_vector(tmp_path / "far.gpkg", [Point(X0 + 50_000, Y0)])
    out = tmp_path / "out"
    args = ["deploy", str(scene), "--weights", "demo", "-o", str(out), "--roi", str(far)]
    assert main(args) == InputError.exit_code == 1
    line = error_line(capsys)
    assert "far.gpkg" in line and "covers no pixel" in line and "--roi-buffer" in line
    assert not out.exists()
    empty = write_vector(tmp_path / "none.geojson", [], crs=CRS)
    assert main([*args[:-1], str(empty)]) == 1
    assert "holds no geometry" in error_line(capsys)


def test_changing_the_roi_recomputes_under_skip_existing(scene, tmp_path) -> None:
    roi = write_vector(tmp_path / "roi.gpkg", [pixel_box(100, 150, 180, 250)])
    config = DeployConfig(stack=scene, weights="demo", output=tmp_path / "out", roi=roi)
    api.deploy(config)
    again = config.model_copy(update={"skip_existing": True})
    assert isinstance(api.deploy(again), Skipped)
    write_vector(roi, [pixel_box(100, 100, 180, 250)])
    with pytest.raises(OutputExistsError, match="input roi changed"):
        api.deploy(again)  # --skip-existing alone says what differs (exit 3)
    redone = api.deploy(again.model_copy(update={"overwrite": True}))
    assert not isinstance(redone, Skipped) and redone.pixels["not_mapped"] == 200 * 260 - 80 * 150
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert isinstance(api.deploy(again), Skipped)
    assert record["settings"]["roi"]["sha256"]["roi.gpkg"] == sha256_file(roi)


def test_roi_options_are_checked_together() -> None:
    with pytest.raises(ValueError, match="either roi"):
        DeployConfig(stack="s.tif", weights="demo", roi="a.gpkg", roi_from_reference="b.gpkg")
    with pytest.raises(ValueError, match="grows a region of interest"):
        DeployConfig(stack="s.tif", weights="demo", roi_buffer=100)
    shp = Path("x.shp")
    assert DeployConfig(stack="s.tif", weights="demo", roi=shp).roi_buffer_m == 0


def test_shapefile_side_files_are_inputs(tmp_path) -> None:
    shp = write_vector(tmp_path / "roi.shp", [pixel_box(0, 0, 5, 5)])
    config = DeployConfig(stack=tmp_path / "s.tif", weights="demo", roi=shp)
    names = set(config.input_files())
    assert {"roi", "roi:dbf", "roi:shx", "roi:prj"} <= names


def test_batch_scenes_and_defaults_take_the_roi_fields(tmp_path) -> None:
    job = JobConfig(
        output=tmp_path / "out",
        deploy={"weights": "demo", "roi_from_reference": tmp_path / "rgi.gpkg"},
    )
    shared = job.deploy_config(SceneSpec(id="a"), stack=tmp_path / "a.tif", outdir=tmp_path / "a")
    assert shared.roi_from_reference == tmp_path / "rgi.gpkg" and shared.roi_buffer_m == 2000
    own = SceneSpec(id="b", roi=tmp_path / "b.gpkg", roi_buffer=500)
    config = job.deploy_config(own, stack=tmp_path / "b.tif", outdir=tmp_path / "b")
    assert config.roi == tmp_path / "b.gpkg" and config.roi_from_reference is None
    assert config.roi_buffer_m == 500


def test_batch_fingerprint_and_summary_carry_the_region(scene, tmp_path) -> None:
    import csv

    from glaviz.batch.plan import plan_scene
    from glaviz.batch.results import write_summary
    from glaviz.batch.task import SceneOutcome

    shp = write_vector(tmp_path / "roi.shp", [pixel_box(0, 0, 50, 50)])
    job = JobConfig(output=tmp_path / "out", deploy={"weights": "demo"})
    plan = plan_scene(job, SceneSpec(id="a", stack=scene, roi=shp, roi_buffer=100))
    assert {"roi", "roi:dbf", "roi:prj"} <= set(plan.fingerprint["inputs"])
    assert plan.fingerprint["config"]["deploy"]["roi_buffer"] == 100
    outcome = SceneOutcome(
        id="a", status="done", windows=63, windows_computed=20, windows_skipped_outside_roi=40,
        windows_skipped_no_valid_pixel=3, invalid_fraction=0.1, not_mapped_fraction=0.6,
    )  # fmt: skip
    write_summary(tmp_path / "summary.csv", [outcome])
    with open(tmp_path / "summary.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["windows_computed"] == "20" and row["windows_skipped_outside_roi"] == "40"
    assert float(row["not_mapped_fraction"]) == 0.6 and float(row["invalid_fraction"]) == 0.1
