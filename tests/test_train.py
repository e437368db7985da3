"""``glaviz train``: config validation, overrides, data errors, a real epoch, bundles and resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from glaviz.cli.app import main
from glaviz.config.loading import apply_overrides, load_train_config, parse_override, validate
from glaviz.config.train import AugmentSection, TrainConfig
from glaviz.errors import ConfigError, InputError, OutputExistsError, WeightsError
from glaviz.samples import make_benchmark_splits
from glaviz.training import read_state, train
from glaviz.training.data import LocationEncoder, augment_sample

# --------------------------------------------------------------------------------------------------
# Helpers: tiny seeded splits and a config that trains in seconds on 2 cores.


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench")
    return make_benchmark_splits(
        folder, tiles=(2, 1, 1), tile_size=32, patch_size=32, regions=("ALP", "HMA"), seed=2
    )


def tiny_toml(path: Path, splits: dict[str, Path], output: Path, extra: str = "") -> Path:
    path.write_text(
        f"""
output = "{output}"
[data]
train = "{splits["train"]}"
val = "{splits["val"]}"
[model]
preset = "tiny"
patch_size = 32
location_encoding = "region"
[training]
epochs = 1
batch_size = 2
steps_per_epoch = 2
seed = 1
{extra}
"""
    )
    return path


def raw_config(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"data": {"train": "t.h5", "val": "v.h5"}}
    for key, value in sections.items():
        base[key] = value
    return base


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Config


def test_defaults_follow_the_published_recipe() -> None:
    config = validate(TrainConfig, raw_config())
    assert config.model.patch_size == 384 and config.model.preset == "paper"
    assert config.training.batch_size == 8
    assert config.epochs == 150 and config.restart_epochs == [10, 30, 70, 150]
    assert config.learning_rate == 5e-4
    assert config.training.focal_gamma == 2.0
    assert (config.training.deep_supervision_weight, config.training.output_weight) == (0.5, 1.0)
    assert config.model.train_dropout is False
    tuned = validate(
        TrainConfig, raw_config(training={"strategy": "finetune", "weights": "global"})
    )
    assert tuned.epochs == 80 and tuned.learning_rate == 5e-5 and tuned.restart_epochs == [80]


def test_errors_name_every_bad_field() -> None:
    bad = raw_config(
        model={"patch_size": 100, "preset": "huge"},
        training={"epochs": 0, "batch_szie": 4},
        augment={"label_smoothing": 1.5},
    )
    with pytest.raises(ConfigError) as info:
        validate(TrainConfig, bad, source="bad.toml")
    message = str(info.value)
    assert "bad.toml" in message
    assert "model.patch_size: must be a multiple of 16, got 100" in message
    assert "model.preset:" in message and "'huge'" in message
    assert "training.epochs: must be at least 1, got 0" in message
    assert "training.batch_szie: unknown setting" in message
    assert "augment.label_smoothing: must be in [0, 1), got 1.5" in message
    with pytest.raises(ConfigError, match=r"data\.train: required setting is missing"):
        validate(TrainConfig, {"data": {"val": "v.h5"}})
    with pytest.raises(ConfigError, match="unknown feature group"):
        validate(TrainConfig, raw_config(data={"train": "t", "val": "v", "features": ["optics"]}))


def test_strategy_rules() -> None:
    with pytest.raises(ConfigError, match=r"needs training.weights"):
        validate(TrainConfig, raw_config(training={"strategy": "finetune"}))
    with pytest.raises(ConfigError, match=r"regional' needs data.regions"):
        validate(TrainConfig, raw_config(training={"strategy": "regional"}))
    with pytest.raises(ConfigError, match="use strategy = 'regional'"):
        validate(TrainConfig, raw_config(data={"train": "t", "val": "v", "regions": ["ALP"]}))


def test_set_overrides(tmp_path: Path) -> None:
    assert parse_override("training.epochs=3") == (["training", "epochs"], 3)
    assert parse_override("augment.noise=true") == (["augment", "noise"], True)
    assert parse_override("data.features=['optical']") == (["data", "features"], ["optical"])
    assert parse_override("data.train=some/path.h5")[1] == "some/path.h5"
    assert parse_override("training.learning_rate = 1e-4")[1] == 1e-4
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("training.epochs")
    data = apply_overrides({"training": {"epochs": 5}}, ["training.epochs=2", "model.preset=tiny"])
    assert data == {"training": {"epochs": 2}, "model": {"preset": "tiny"}}

    toml = tmp_path / "c.toml"
    toml.write_text('[data]\ntrain = "a.h5"\nval = "b.h5"\n')
    config = load_train_config(toml, ["model.patch_size=64", "training.epochs=3"])
    assert config.model.patch_size == 64 and config.epochs == 3
    with pytest.raises(ConfigError, match=r"model.patch_size: must be a multiple of 16, got 100"):
        load_train_config(toml, ["model.patch_size=100"])
    with pytest.raises(ConfigError, match=r"model.pach_size: unknown setting"):
        load_train_config(toml, ["model.pach_size=64"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_train_config(tmp_path / "broken.toml")
    tuned = load_train_config(toml, weights="global")
    assert tuned.training.strategy == "finetune" and tuned.training.weights == "global"


def test_cli_config_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[data]\ntrain = "a.h5"\nval = "b.h5"\n[model]\npatch_size = 100\n')
    code, err = run_cli(["train", str(toml)], capsys)
    assert code == 2
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert "model.patch_size: must be a multiple of 16, got 100" in err


def _project(root: Path) -> Path:
    """``root/data/{train,val}.h5`` and ``root/models/m.glaviz``; returns ``root/configs``."""
    for name in ("data/train.h5", "data/val.h5", "models/m.glaviz"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    (root / "configs").mkdir()
    return root / "configs"


def test_paths_in_a_train_config_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = _project(tmp_path)
    toml = configs / "run.toml"
    toml.write_text(
        'output = "../runs/a"\n[data]\ntrain = "../data/train.h5"\nval = "../data/val.h5"\n'
        '[training]\nstrategy = "finetune"\nweights = "../models/m.glaviz"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_train_config(toml)
    assert config.output == tmp_path / "runs" / "a"
    assert (config.data.train, config.data.val) == (
        tmp_path / "data" / "train.h5",
        tmp_path / "data" / "val.h5",
    )
    assert config.training.weights == str(tmp_path / "models" / "m.glaviz")
    # What is typed on the command line stays relative to the working directory; names stay names.
    typed = load_train_config(toml, ["data.val=v.h5", "output=out"], weights="global")
    assert typed.data.val == elsewhere / "v.h5" and typed.output == elsewhere / "out"
    assert typed.training.weights == "global"


def test_old_style_cwd_relative_path_is_one_error_naming_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = _project(tmp_path)
    toml = configs / "run.toml"
    # Written for the old rule: relative to the working directory (tmp_path), not to configs/.
    toml.write_text('[data]\ntrain = "data/train.h5"\nval = "../data/val.h5"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_train_config(toml)
    message = str(info.value)
    assert "\n" not in message and message.startswith('data.train = "data/train.h5"')
    assert "now relative to the config file" in message and "since this release" in message
    assert '"../data/train.h5"' in message and str(tmp_path / "data" / "train.h5") in message
    code, err = run_cli(["train", str(toml)], capsys)
    assert code == 2 and err.count("\n") == 1 and "../data/train.h5" in err
    # A --set value replaces the file's path, so the file's old path no longer matters.
    config = load_train_config(toml, ["data.train=data/train.h5"])
    assert config.data.train == tmp_path / "data" / "train.h5"
    # A path that exists next to the file is the file's, whatever the working directory holds.
    (configs / "data").mkdir()
    (configs / "data" / "train.h5").write_bytes(b"")
    assert load_train_config(toml).data.train == configs / "data" / "train.h5"


def test_error_lines_name_origin_and_nearest_key(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[data]\ntrain = "a.h5"\nval = "b.h5"\n[traning]\nepochs = 2\n')
    with pytest.raises(ConfigError) as info:
        load_train_config(toml, ["training.batch_szie=4", "model.patch_size=24"])
    lines = str(info.value).splitlines()
    assert f"traning: unknown setting (in {toml}); did you mean training?" in lines
    assert (
        "training.batch_szie: unknown setting (from --set); did you mean training.batch_size?"
        in (lines)
    )
    assert "model.patch_size: must be a multiple of 16, got 24 (from --set)" in lines
    toml.write_text("[model]\npreset = 'tiny'\n")
    with pytest.raises(ConfigError, match=r"required section \[data\] is missing"):
        load_train_config(toml)
    toml.write_text('[data]\nval = "b.h5"\n')
    with pytest.raises(ConfigError, match=r"give --set data\.train=… on the command line"):
        load_train_config(toml)


# --------------------------------------------------------------------------------------------------
# Data errors (before any model is built)


def test_feature_group_absent_from_dataset(
    tmp_path: Path, splits: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tiny_toml(tmp_path / "c.toml", splits, tmp_path / "run")
    code, err = run_cli(["train", str(toml), "--set", "data.features=['optical','in_sar']"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "has groups optical, dem; the config (data.features, train split) asks for in_sar" in err
    assert not (tmp_path / "run").exists()


def test_missing_dataset_group(tmp_path: Path, splits: dict[str, Path]) -> None:
    broken = tmp_path / "train.h5"
    broken.write_bytes(splits["train"].read_bytes())
    with h5py.File(broken, "a") as f:
        del f[next(iter(f))]["outlines"]
    config = load_train_config(
        tiny_toml(tmp_path / "c.toml", {**splits, "train": broken}, tmp_path / "run")
    )
    with pytest.raises(InputError, match="has no 'outlines' dataset"):
        train(config)
    missing = load_train_config(
        tiny_toml(tmp_path / "d.toml", {**splits, "val": tmp_path / "nope.h5"}, tmp_path / "r2")
    )
    with pytest.raises(InputError, match=r"nope\.h5 does not exist"):
        train(missing)


def test_region_filter_that_matches_nothing(tmp_path: Path, splits: dict[str, Path]) -> None:
    toml = tiny_toml(tmp_path / "c.toml", splits, tmp_path / "run", 'strategy = "regional"')
    config = load_train_config(toml, ["data.regions=['NZ']"])
    with pytest.raises(InputError, match="no tiles in regions"):
        train(config)


# --------------------------------------------------------------------------------------------------
# Input pipeline pieces (numpy)


def test_augmentations_move_labels_with_features_and_keep_nodata() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 1.0, (16, 16, 1)).astype(np.float32)
    base[0, 0] = 0.0  # a no-data pixel
    y = np.concatenate([1 - (base > 0.5), base > 0.5], axis=-1).astype(np.float32)
    radiometric = AugmentSection(
        flips=False, rotations=False, crop_and_scale=False, gamma_contrast=True, noise=True
    )
    geometric = AugmentSection(gamma_contrast=False, noise=False)
    for seed in range(20):
        x2, y2 = augment_sample(
            {"g": base.copy()}, y.copy(), geometric, np.random.default_rng(seed), occlusion_size=8
        )
        # Geometry only: the label still marks exactly the pixels above 0.5.
        np.testing.assert_array_equal(y2[..., 1], (x2["g"][..., 0] > 0.5).astype(np.float32))
        x3, _ = augment_sample(
            {"g": base.copy()}, y.copy(), radiometric, np.random.default_rng(seed), occlusion_size=8
        )
        x4, _ = augment_sample(
            {"g": base.copy()}, y.copy(), radiometric, np.random.default_rng(seed), occlusion_size=8
        )
        np.testing.assert_array_equal(x3["g"], x4["g"])  # seeded
        assert x3["g"][0, 0, 0] == 0.0  # no-data stays no-data


def test_location_encoder() -> None:
    enc = LocationEncoder("region", ("ALP", "HMA", "unknown"))
    np.testing.assert_array_equal(enc.region("HMA"), [0, 1, 0])
    np.testing.assert_array_equal(enc.region("NZ"), [0, 0, 1])
    np.testing.assert_array_equal(enc.unknown(), [0, 0, 1])
    v = LocationEncoder.coordinates(90.0, 180.0)
    np.testing.assert_allclose(v, [1, 0, 0, -1], atol=1e-6)  # radians, not degrees


def test_cosine_restarts_schedule() -> None:
    from glaviz.training.recipe import CosineRestarts

    schedule = CosineRestarts(5e-4, [10, 30])
    values = [float(schedule(s)) for s in (0, 5, 9, 10, 20, 30, 40)]
    np.testing.assert_allclose(values[0], 5e-4, rtol=1e-6)
    np.testing.assert_allclose(values[1], 2.5e-4, rtol=1e-5)
    assert values[2] < 2e-5
    np.testing.assert_allclose(values[3], 5e-4, rtol=1e-6)  # warm restart
    np.testing.assert_allclose(values[4], 2.5e-4, rtol=1e-5)
    np.testing.assert_allclose(values[5:], 5e-4, rtol=1e-6)  # after the last restart


# --------------------------------------------------------------------------------------------------
# Real (tiny) training: one epoch, bundle, resume, fine-tuning checks


def test_train_epoch_bundle_and_resume(
    tmp_path: Path, splits: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from glaviz.model.bundle import load_bundle, read_metadata

    out = tmp_path / "run"
    toml = tiny_toml(tmp_path / "c.toml", splits, out)
    code, err = run_cli(["train", str(toml)], capsys)
    assert code == 0, err
    bundle = out / "model.glaviz"
    meta = read_metadata(bundle)
    assert meta.architecture.patch_size == 32 and meta.architecture.width == 16
    assert list(meta.feature_groups) == ["optical", "dem"]
    assert meta.region_names == ["ALP", "HMA", "unknown"]
    assert meta.architecture.location_size == 3
    assert set(meta.normalization) == {"optical", "dem"}
    assert meta.source == str(toml)
    assert meta.training["epochs_run"] == 1 and meta.training["epoch"] == 1
    assert 0.0 <= meta.training["val_iou"] <= 1.0
    assert meta.training["dataset"]["train"] == str(splits["train"])
    assert (out / "best_loss.glaviz").is_file() and (out / "config.json").is_file()
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    loaded = load_bundle(bundle)
    x = {
        "optical": np.zeros((1, 32, 32, 6), np.float32),
        "dem": np.zeros((1, 32, 32, 2), np.float32),
        "location": np.eye(3, dtype=np.float32)[:1],
    }
    assert loaded.inference_model.predict(x, verbose=0).shape == (1, 32, 32, 2)

    # A batch re-run skips the finished run; a changed setting is named and stops it (exit 3).
    assert (out / "run.json").is_file()
    assert main(["train", str(toml), "--skip-existing"]) == 0
    assert "skipped" in capsys.readouterr().out
    code, err = run_cli(
        ["train", str(toml), "--set", "training.epochs=2", "--skip-existing"], capsys
    )
    assert code == 3 and "training" in err and "different training run" in err

    # Starting again in the same folder is refused; resuming without raising epochs too.
    with pytest.raises(OutputExistsError, match="--resume"):
        train(load_train_config(toml))
    with pytest.raises(ConfigError, match="already completed 1 epochs"):
        train(load_train_config(toml), resume=True)
    with pytest.raises(ConfigError, match="differ"):
        train(load_train_config(toml, ["training.epochs=2", "model.patch_size=16"]), resume=True)

    state = read_state(out)
    assert state is not None and state["epoch"] == 1
    code, err = run_cli(["train", str(toml), "--set", "training.epochs=2", "--resume"], capsys)
    assert code == 0, err
    state = read_state(out)
    assert state["epoch"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]
    with (out / "log.csv").open() as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
    assert len(list((out / "state").glob("epoch-*.weights.h5"))) == 1
    # The optimizer's step counter continued (2 steps per epoch): resume restored it.
    with h5py.File(out / "state" / f"{state['checkpoint']}.optimizer.h5") as f:
        counters = [f[k][()] for k in f if "iteration" in str(f[k].attrs["path"])]
    assert counters and int(counters[0]) == 4
    assert read_metadata(bundle).training["epochs_run"] == 2

    # Fine-tuning needs the same architecture: a different patch size is one clear error.
    other = tiny_toml(tmp_path / "f.toml", splits, tmp_path / "ft")
    tuned = load_train_config(other, ["model.patch_size=16"], weights=str(bundle))
    with pytest.raises(WeightsError, match=r"cannot fine-tune from .*patch_size 32 vs 16"):
        train(tuned)
    json.dumps(state)  # the resume state is plain JSON


def test_resume_without_state(tmp_path: Path, splits: dict[str, Path]) -> None:
    config = load_train_config(tiny_toml(tmp_path / "c.toml", splits, tmp_path / "run"))
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(config, resume=True)


@pytest.mark.slow
def test_finetune_from_bundle(tmp_path: Path, splits: dict[str, Path]) -> None:
    first = train(load_train_config(tiny_toml(tmp_path / "a.toml", splits, tmp_path / "a")))
    tuned = train(
        load_train_config(
            tiny_toml(tmp_path / "b.toml", splits, tmp_path / "b"), weights=str(first.bundle)
        )
    )
    from glaviz.model.bundle import read_metadata

    meta = read_metadata(tuned.bundle)
    assert meta.training["strategy"] == "finetune"
    assert meta.training["learning_rate"] == 5e-5
    assert meta.region_names == ["ALP", "HMA", "unknown"]


# --------------------------------------------------------------------------------------------------
# The published files' layout, end to end


def test_train_predict_evaluate_on_the_published_layout(tmp_path: Path, capsys) -> None:
    """float64, contiguous, bright_dark_outlines, epsg, uneven padding to 384, DEMO names."""
    demo = make_benchmark_splits(
        tmp_path / "demo",
        tiles=(2, 1, 1),
        tile_size=(97, 110),
        patch_size=384,
        regions=("ALP", "HMA"),
        names="demo",
        layout="published",
        seed=4,
    )
    config = tmp_path / "demo.toml"
    config.write_text(
        f"""
output = "{tmp_path / "run"}"
[data]
train = "{demo["train"]}"
val = "{demo["val"]}"
[model]
preset = "tiny"
patch_size = 32
[training]
epochs = 1
batch_size = 2
steps_per_epoch = 2
validation_steps = 2
"""
    )
    assert main(["train", str(config)]) == 0, capsys.readouterr().err
    bundle = tmp_path / "run" / "model.glaviz"
    predictions = tmp_path / "predictions.h5"
    args = ["predict", "--weights", str(bundle), "--dataset", str(demo["test"])]
    assert main([*args, "-o", str(predictions)]) == 0, capsys.readouterr().err
    with h5py.File(predictions) as f, h5py.File(demo["test"]) as src:
        (name,) = f
        assert f[name]["prob"].shape == (97, 110, 2)  # the original tile, padding cropped
        ph, pw = src[name].attrs["padding_height"], src[name].attrs["padding_width"]
        truth = src[name]["outlines"][ph : ph + 97, pw : pw + 110, 1]
        np.testing.assert_array_equal(f[name]["true"][()], truth)
    scores = tmp_path / "scores.json"
    assert main(["evaluate", str(predictions), "--scores", str(scores)]) == 0
    total = json.loads(scores.read_text())["total"]
    assert total["tp"] + total["fp"] + total["fn"] + total["tn"] == 97 * 110
    # The split file names are recognised: a swapped split warns, a split is no predictions file.
    capsys.readouterr()
    assert main(["evaluate", str(demo["test"])]) == 1
    assert "test split of the demo files" in capsys.readouterr().err


def test_swapped_split_names_warn(caplog) -> None:
    from glaviz.training.data import _check_split_names

    with caplog.at_level("WARNING", logger="glaviz"):
        _check_split_names({"train": Path("a/gsgm_train_DEMO.hdf5"), "val": Path("test.h5")})
    assert len(caplog.records) == 1
    assert "data.val is test.h5, which is the test split" in caplog.records[0].getMessage()
