"""glaviz deploy: published results, streaming equals in-memory, outputs, options, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from glaviz.cli.app import main
from glaviz.config import DeployConfig
from glaviz.engine.blend import blend_in_memory
from glaviz.engine.deploy import deploy
from glaviz.engine.loop import best_batch_size
from glaviz.engine.tiling import extract_window, tile_grid
from glaviz.errors import ConfigError, InputError, OutputExistsError, WeightsError
from glaviz.published.normalisation import NormalisationStats, normalise_group
from tests.helpers import PATCH, tiny_bundle, write_stack


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Path:
    return write_stack(workdir / "stack.tif")


@pytest.fixture(scope="module")
def bundle(workdir: Path) -> Path:
    return tiny_bundle(workdir / "tiny.glaviz")


def read(path: Path, band: int | None = None) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(band) if band else ds.read()


# --- published results ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_stack(reference_dir: Path, tmp_path_factory) -> Path:
    from glaviz.features.stack import compile_stack

    scene = reference_dir / "scene"
    out = tmp_path_factory.mktemp("ref") / "stack.tif"
    compile_stack(
        output=out,
        optical=scene / "optical.tif",
        elevation=scene / "elevation.tif",
        slope=scene / "slope.tif",
    )
    return out


def _valid(reference_dir: Path) -> np.ndarray:
    return np.all(np.isfinite(read(reference_dir / "scene" / "optical.tif")), axis=0)


def test_reproduces_published_deploy(reference_dir, reference_stack, tmp_path) -> None:
    weights = reference_dir / "weights" / "glavitu_global_weights.h5"
    out = tmp_path / "plain"
    deploy(
        DeployConfig(stack=reference_stack, weights=str(weights), output=out, probabilities=True)
    )
    expected = reference_dir / "expected"
    probs = np.moveaxis(read(out / "probabilities.tif"), 0, -1)
    diff = np.abs(probs - np.load(expected / "probs_global.npy"))
    assert diff.max() <= 2e-3 and diff.mean() <= 2e-5
    conf = read(out / "confidence.tif", 1)
    assert np.abs(conf - read(expected / "deploy_plain" / "confidence.tif", 1)).max() <= 5e-3
    valid = _valid(reference_dir)
    ours, theirs = (
        read(out / "outlines.tif", 1),
        read(expected / "deploy_plain" / "outlines.tif", 1),
    )
    assert (ours[valid] == theirs[valid]).mean() >= 0.9999
    assert np.all(ours[~valid] == 255)
    run = json.loads((out / "run.json").read_text())
    assert run["windows"] == 9 and run["settings"]["features"] == ["optical", "dem"]


def test_reproduces_published_smoothed_calibrated(reference_dir, reference_stack, tmp_path) -> None:
    weights = reference_dir / "weights" / "glavitu_global_weights.h5"
    calibration = reference_dir / "calibration" / "glavitu_global_softmax.json"
    out = tmp_path / "smooth"
    deploy(
        DeployConfig(
            stack=reference_stack,
            weights=str(weights),
            output=out,
            smoothing=3,
            calibration=str(calibration),
            vector=False,
        )
    )
    expected = reference_dir / "expected" / "deploy_smooth3_calibrated"
    valid = _valid(reference_dir)
    ours, theirs = read(out / "outlines.tif", 1), read(expected / "outlines.tif", 1)
    assert (ours[valid] == theirs[valid]).mean() >= 0.9999
    diff = np.abs(read(out / "confidence.tif", 1) - read(expected / "confidence.tif", 1))
    # The calibration curve is steep near confidence 0 (slope up to ~170), which magnifies the
    # float32 differences between TensorFlow versions on a handful of pixels with p ≈ 0.5.
    assert np.mean(diff <= 5e-3) >= 0.9999
    assert diff.max() <= 1e-2 and diff.mean() <= 1e-4
    assert not (out / "outlines.gpkg").exists()


# --- the engine on a tiny model ------------------------------------------------------------


def test_streaming_equals_in_memory_reference(stack, bundle, tmp_path) -> None:
    from glaviz.model.bundle import load_bundle

    out = tmp_path / "out"
    result = deploy(
        DeployConfig(stack=stack, weights=str(bundle), output=out, probabilities=True, batch_size=3)
    )
    model = load_bundle(bundle).inference_model
    stats = NormalisationStats.published()
    with rasterio.open(stack) as ds:
        raw = np.moveaxis(ds.read(), 0, -1)
    scene = {"optical": normalise_group("optical", raw[..., :6], stats)}
    scene["dem"] = normalise_group("dem", raw[..., 6:8], stats)
    grid = tile_grid(70, 90, PATCH)

    def window(r: int, c: int) -> np.ndarray:
        inputs = {g: extract_window(a, grid, r, c)[None] for g, a in scene.items()}
        return np.asarray(model(inputs))[0]

    # glaviz bundles blend with the taper under --blend auto (docs/deploy.md)
    expected = blend_in_memory(grid, window, dtype=np.float64, blend="taper")
    probs = np.moveaxis(read(out / "probabilities.tif"), 0, -1)
    np.testing.assert_allclose(probs, expected, atol=2e-5)
    outlines = read(out / "outlines.tif", 1)
    valid = np.all(np.isfinite(raw[..., :6]), axis=-1)
    np.testing.assert_array_equal(outlines[valid], np.argmax(expected, -1)[valid])
    assert np.all(outlines[~valid] == 255)
    assert result.windows == grid.n_windows
    assert sorted(p.name for p in out.iterdir()) == [
        "confidence.tif",
        "outlines.gpkg",
        "outlines.tif",
        "probabilities.tif",
        "quicklook.png",
        "run.json",
    ]


def test_outputs_are_georeferenced_tiled_and_described(stack, bundle, tmp_path) -> None:
    import geopandas as gpd

    out = tmp_path / "out"
    deploy(DeployConfig(stack=stack, weights=str(bundle), output=out))
    with rasterio.open(stack) as src, rasterio.open(out / "outlines.tif") as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert dst.dtypes[0] == "uint8" and dst.nodata == 255
        assert dst.colormap(1)[1][:3] == (0, 170, 255)
        assert dst.profile["tiled"] and dst.compression is not None
    with rasterio.open(out / "confidence.tif") as conf:
        values = conf.read(1)
        assert conf.dtypes[0] == "float32"
        assert np.all((values >= 0) & (values <= 1))
    polygons = gpd.read_file(out / "outlines.gpkg")
    assert polygons.crs == "EPSG:32632"
    glacier_px = int(np.count_nonzero(read(out / "outlines.tif", 1) == 1))
    assert polygons["area_km2"].sum() == pytest.approx(glacier_px * 100 / 1e6)
    run = json.loads((out / "run.json").read_text())
    for key in ("glaviz", "versions", "settings", "timings", "windows"):
        assert key in run
    assert run["settings"]["stack"] == str(stack.resolve())
    assert run["timings"]["model_s"] > 0


def test_tta_mc_and_precision(stack, bundle, tmp_path) -> None:
    plain = tmp_path / "plain"
    deploy(
        DeployConfig(
            stack=stack, weights=str(bundle), output=plain, probabilities=True, vector=False
        )
    )
    base = read(plain / "probabilities.tif")
    tta = tmp_path / "tta"
    deploy(
        DeployConfig(
            stack=stack,
            weights=str(bundle),
            output=tta,
            tta=True,
            batch_size=1,
            probabilities=True,
            vector=False,
        )
    )
    augmented = read(tta / "probabilities.tif")
    assert not np.allclose(augmented, base)
    np.testing.assert_allclose(augmented.sum(0), 1.0, atol=1e-5)
    mc = tmp_path / "mc"
    deploy(
        DeployConfig(
            stack=stack, weights=str(bundle), output=mc, mc=3, probabilities=True, vector=False
        )
    )
    assert not np.allclose(read(mc / "probabilities.tif"), base)
    bf16 = tmp_path / "bf16"
    deploy(
        DeployConfig(
            stack=stack, weights=str(bundle), output=bf16, precision="bfloat16", vector=False
        )
    )
    a, b = read(plain / "outlines.tif", 1), read(bf16 / "outlines.tif", 1)
    assert (a == b).mean() > 0.95
    with pytest.raises(ConfigError, match="float16 needs a GPU"):
        deploy(
            DeployConfig(
                stack=stack, weights=str(bundle), output=tmp_path / "f16", precision="float16"
            )
        )


def test_calibration_from_bundle_name_and_none(stack, tmp_path) -> None:
    iso = {"method": "isotonic", "x": [0.0, 1.0], "y": [0.2, 0.3]}
    weights = tiny_bundle(tmp_path / "cal.glaviz", calibration=iso)
    # Under the taper (glaviz's default for bundles) this random tiny model's raw confidence stays
    # below 0.3 everywhere, which would hide whether calibration was applied; the published blend
    # does not.
    blend = "gaussian"
    deploy(
        DeployConfig(
            stack=stack, weights=str(weights), output=tmp_path / "a", vector=False, blend=blend
        )
    )
    conf = read(tmp_path / "a" / "confidence.tif", 1)
    assert conf.min() >= 0.2 and conf.max() <= 0.3
    deploy(
        DeployConfig(
            stack=stack,
            weights=str(weights),
            output=tmp_path / "b",
            vector=False,
            calibration="none",
            blend=blend,
        )
    )
    assert read(tmp_path / "b" / "confidence.tif", 1).max() > 0.3


def test_region_and_coordinate_encoding(tmp_path) -> None:
    stack = write_stack(tmp_path / "stack.tif", height=40, width=40)
    region = tiny_bundle(tmp_path / "region.glaviz", location="region")
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps({"region_vector": [1 / 12] * 12, "regions": ["x"] * 12}))
    deploy(DeployConfig(stack=stack, weights=str(region), output=tmp_path / "r", region_vector=rv))
    short = tmp_path / "short.json"
    short.write_text(json.dumps([0.5, 0.5]))
    with pytest.raises(ConfigError, match=r"has 2 values.*has 12"):
        deploy(
            DeployConfig(
                stack=stack, weights=str(region), output=tmp_path / "r2", region_vector=short
            )
        )
    with pytest.raises(ConfigError, match="needs a location input of size 12"):
        deploy(DeployConfig(stack=stack, weights=str(region), output=tmp_path / "r3"))
    coords = tiny_bundle(tmp_path / "coords.glaviz", location="coordinate")
    deploy(
        DeployConfig(
            stack=stack, weights=str(coords), output=tmp_path / "c", coordinate_encoding=True
        )
    )
    no_crs = write_stack(tmp_path / "nocrs.tif", height=40, width=40, crs=None)
    with pytest.raises(InputError, match="no CRS"):
        deploy(
            DeployConfig(
                stack=no_crs, weights=str(coords), output=tmp_path / "c2", coordinate_encoding=True
            )
        )


def test_bad_inputs(stack, bundle, tmp_path) -> None:
    optical_only = write_stack(tmp_path / "optical.tif", groups=("optical",))
    with pytest.raises(InputError, match="the model needs optical, dem"):
        deploy(DeployConfig(stack=optical_only, weights=str(bundle), output=tmp_path / "a"))
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(WeightsError):
        deploy(DeployConfig(stack=stack, weights=str(corrupt), output=tmp_path / "b"))
    deploy(DeployConfig(stack=stack, weights=str(bundle), output=tmp_path / "c", vector=False))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        deploy(DeployConfig(stack=stack, weights=str(bundle), output=tmp_path / "c"))
    not_a_stack = tmp_path / "nope.tif"
    not_a_stack.write_text("nope")
    with pytest.raises(InputError, match="cannot open stack"):
        deploy(DeployConfig(stack=not_a_stack, weights=str(bundle), output=tmp_path / "d"))


def test_nan_in_other_groups_is_masked_not_spread(bundle, tmp_path) -> None:
    stack = write_stack(tmp_path / "hole.tif")
    with rasterio.open(stack, "r+") as ds:
        dem = ds.read(7)
        dem[30:33, 40:45] = np.nan
        ds.write(dem, 7)
    deploy(DeployConfig(stack=stack, weights=str(bundle), output=tmp_path / "out", vector=False))
    outlines = read(tmp_path / "out" / "outlines.tif", 1)
    assert np.all(outlines[30:33, 40:45] == 255)
    assert np.count_nonzero(outlines == 255) == 15 + 5  # the DEM hole and the optical NaNs
    assert np.all(np.isfinite(read(tmp_path / "out" / "confidence.tif", 1)))


def test_stack_smaller_than_one_window_is_padded(bundle, tmp_path) -> None:
    small = write_stack(tmp_path / "small.tif", height=9, width=13)
    result = deploy(DeployConfig(stack=small, weights=str(bundle), output=tmp_path / "out"))
    assert result.windows == 1
    assert read(tmp_path / "out" / "outlines.tif", 1).shape == (9, 13)


def test_failed_run_leaves_nothing_finished(stack, bundle, tmp_path, monkeypatch) -> None:
    from glaviz.engine import inference

    calls = {"n": 0}
    original = inference.BatchedModel.predict

    def flaky(self, inputs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, inputs)

    monkeypatch.setattr(inference.BatchedModel, "predict", flaky)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        deploy(DeployConfig(stack=stack, weights=str(bundle), output=out, batch_size=2))
    assert not out.exists()  # the run created the folder, so it removed it
    calls["n"] = 0
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        deploy(DeployConfig(stack=stack, weights=str(bundle), output=out, batch_size=2))
    assert list(out.iterdir()) == []  # a folder the user made stays, empty


def test_overwrite_replaces_and_drops_stale_outputs(stack, bundle, tmp_path) -> None:
    out = tmp_path / "out"
    deploy(DeployConfig(stack=stack, weights=str(bundle), output=out, probabilities=True))
    deploy(DeployConfig(stack=stack, weights=str(bundle), output=out, vector=False, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == [
        "confidence.tif",
        "outlines.tif",
        "quicklook.png",
        "run.json",
    ]


def test_best_batch_size() -> None:
    assert best_batch_size(9, 4) == 3
    assert best_batch_size(49, 4) == 1
    assert best_batch_size(225, 4) == 3
    assert best_batch_size(64, 8) == 8
    with pytest.raises(ConfigError):
        best_batch_size(4, 0)


def test_cli_deploy(stack, bundle, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["deploy", str(stack), "--weights", str(bundle), "-o", str(out), "--no-vector"]
    assert main(args) == 0
    assert "windows" in capsys.readouterr().out
    assert main(args) == 3
    assert "Error: " in capsys.readouterr().err
    assert main(["-q", *args, "--overwrite"]) == 0
    assert capsys.readouterr().out == ""
    assert main([*args, "--overwrite", "--features", "optical,lidar"]) == 2
    assert main([*args, "--overwrite", "--weights", "no-such-model"]) == 2


@pytest.mark.parametrize(
    "name",
    [
        "glavitu_global_softmax.json",
        "glavitu_global_insar_softmax.json",
        "glavitu_regionencoding_softmax.json",
    ],
)
def test_published_calibrations_equal_sklearn(name, stack, bundle, tmp_path, monkeypatch) -> None:
    from sklearn.kernel_ridge import KernelRidge

    from glaviz.calibration.model import KernelRidgeCalibration

    seen: list[tuple[np.ndarray, np.ndarray]] = []
    original = KernelRidgeCalibration.apply

    def spy(self, conf):
        out = original(self, conf)
        seen.append((np.array(conf, dtype=np.float64), np.array(out)))
        return out

    monkeypatch.setattr(KernelRidgeCalibration, "apply", spy)
    from glaviz.registry.catalogue import calibration_path

    path = calibration_path(name.removesuffix(".json"))  # the packaged copy of the published file
    out = tmp_path / "out"
    deploy(
        DeployConfig(
            stack=stack, weights=str(bundle), output=out, calibration=str(path), vector=False
        )
    )
    spec = json.loads(path.read_text())
    krr = KernelRidge(kernel="laplacian", gamma=spec["gamma"])
    krr.X_fit_ = np.asarray(spec["x_fit"], np.float64)[:, None]
    krr.dual_coef_ = np.asarray(spec["dual_coef"], np.float64)
    conf_in = np.concatenate([c.ravel() for c, _ in seen])
    conf_out = np.concatenate([o.ravel() for _, o in seen])
    assert conf_in.size == 70 * 90
    expected = np.clip(krr.predict(conf_in[:, None]).ravel(), 0, 1)
    np.testing.assert_allclose(conf_out, expected, atol=1e-6, rtol=0)
    written = read(out / "confidence.tif", 1).ravel()
    np.testing.assert_array_equal(written, conf_out.astype(np.float32))


# --- outputs for QGIS and the web ------------------------------------------------------------


def test_outputs_are_valid_cogs_with_overviews_and_a_quicklook(bundle, tmp_path) -> None:
    from PIL import Image
    from rio_cogeo.cogeo import cog_validate

    stack = write_stack(tmp_path / "wide.tif", height=300, width=700)
    out = tmp_path / "out"
    deploy(
        DeployConfig(stack=stack, weights=str(bundle), output=out, probabilities=True, vector=False)
    )
    for name in ("outlines.tif", "confidence.tif", "probabilities.tif"):
        valid, errors, _ = cog_validate(out / name, strict=True)
        assert valid, (name, errors)
        with rasterio.open(out / name) as ds:
            assert ds.overviews(1), name
    with rasterio.open(out / "outlines.tif") as ds:
        # Nearest resampling: the overview holds only the classes and nodata.
        level = ds.overviews(1)[0]
        small = ds.read(1, out_shape=(ds.height // level, ds.width // level))
        assert set(np.unique(small)) <= {0, 1, 255}
        assert ds.colormap(1)[1][:3] == (0, 170, 255) and ds.nodata == 255
    with rasterio.open(out / "confidence.tif") as ds:
        full = ds.read(1)
        level = ds.overviews(1)[0]
        small = ds.read(1, out_shape=(ds.height // level, ds.width // level))
        # Average resampling: an overview pixel is the mean of its block, not one sample of it.
        block = full[:level, :level].mean()
        assert small[0, 0] == pytest.approx(block, abs=1e-4)
    image = Image.open(out / "quicklook.png")
    assert image.format == "PNG" and max(image.size) <= 2048
    assert image.size == (700 + 8 + 700, 300)


def test_no_quicklook(stack, bundle, tmp_path) -> None:
    out = tmp_path / "out"
    deploy(
        DeployConfig(stack=stack, weights=str(bundle), output=out, vector=False, quicklook=False)
    )
    assert not (out / "quicklook.png").exists()
    assert json.loads((out / "run.json").read_text())["config"]["quicklook"] is False


def test_second_deploy_into_a_locked_folder_fails_at_once(stack, bundle, tmp_path, capsys) -> None:
    from filelock import FileLock

    from glaviz.errors import OutputLockedError
    from glaviz.runs.outputs import LOCK_NAME

    out = tmp_path / "out"
    out.mkdir()
    with FileLock(out / LOCK_NAME):  # another run holds the folder
        with pytest.raises(OutputLockedError, match="another glaviz deploy is writing"):
            deploy(DeployConfig(stack=stack, weights=str(bundle), output=out))
        args = ["deploy", str(stack), "--weights", str(bundle), "-o", str(out)]
        assert main(args) == 1
        assert capsys.readouterr().err.startswith("Error: another glaviz deploy")
    assert out.is_dir()  # the folder the user made stays
    result = deploy(DeployConfig(stack=stack, weights=str(bundle), output=out, vector=False))
    assert not (out / LOCK_NAME).exists() and result.outputs


def test_batch_size_comes_from_the_budget_unless_given(stack, bundle, tmp_path) -> None:
    out = tmp_path / "a"
    deploy(DeployConfig(stack=stack, weights=str(bundle), output=out, vector=False))
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["batch_size"] is None and settings["batch_size_used"] > 1
    out = tmp_path / "b"
    deploy(
        DeployConfig(
            stack=stack, weights=str(bundle), output=out, vector=False, activation_budget_mb=0.01
        )
    )
    assert json.loads((out / "run.json").read_text())["settings"]["batch_size_used"] == 1
    out = tmp_path / "c"
    deploy(
        DeployConfig(
            stack=stack,
            weights=str(bundle),
            output=out,
            vector=False,
            batch_size=5,
            activation_budget_mb=0.01,
        )
    )
    # 25 windows: --batch-size 5 wins over the budget (and needs no padded batch).
    assert json.loads((out / "run.json").read_text())["settings"]["batch_size_used"] == 5


def test_glaviz_models_blend_with_the_taper_and_lose_the_window_seams(tmp_path: Path) -> None:
    """The demo model's outermost window pixels are its least confident; the Gaussian blend lets
    them through as a grid of seams in the confidence, the taper does not (docs/deploy.md)."""
    import json
    from types import SimpleNamespace

    import glaviz
    from glaviz.engine.deploy import DeployPlan
    from glaviz.engine.tiling import tile_grid
    from glaviz.samples import make_scene

    files = make_scene(tmp_path / "scene", size=(384, 384), seed=11)
    stack = tmp_path / "stack.tif"
    glaviz.compile_features(
        glaviz.FeaturesConfig(optical=files.optical, elevation=files.elevation, output=stack)
    )
    grid = tile_grid(384, 384, 64)  # the demo model's patch
    edges = {o - grid.pad_left + d for o in grid.col_origins for d in (0, 64)} & set(range(1, 384))

    def seam_ratio(blend: str) -> float:
        out = tmp_path / blend
        glaviz.deploy(glaviz.DeployConfig(stack=stack, weights="demo", output=out, blend=blend))
        with rasterio.open(out / "confidence.tif") as src:
            jumps = np.abs(np.diff(np.nanmean(src.read(1), axis=0)))
        at = [jumps[e - 1] for e in sorted(edges)]
        rest = [j for i, j in enumerate(jumps) if i + 1 not in edges]
        settings_blend = json.loads((out / "run.json").read_text())["settings"]["blend"]
        assert settings_blend == ("taper" if blend == "auto" else blend)
        return float(np.mean(at) / np.mean(rest))

    gaussian, auto = seam_ratio("gaussian"), seam_ratio("auto")
    assert gaussian > 1.5 and auto < 0.75 * gaussian, (gaussian, auto)
    published = SimpleNamespace(config=SimpleNamespace(blend="auto"), model=SimpleNamespace())
    published.model.kind = "checkpoint"
    assert DeployPlan.blend.fget(published) == "gaussian"  # published weights blend as published
