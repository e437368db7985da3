"""GlaViTU architecture: presets, feature groups, location input, dropout switch, serialisation."""

from __future__ import annotations

import numpy as np
import pytest

from glaviz.errors import ConfigError
from glaviz.model.glavitu import GlaViTUConfig, build_glavitu


def _inputs(config: GlaViTUConfig, seed: int = 0, batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = config.patch_size
    data = {
        g: rng.random((batch, p, p, c), dtype=np.float32) for g, c in config.feature_groups.items()
    }
    if config.uses_location:
        loc = rng.random((batch, config.location_size)).astype(np.float32)
        data["location"] = loc / loc.sum(axis=1, keepdims=True)
    return data


def test_published_parameter_counts() -> None:
    train, infer = build_glavitu(GlaViTUConfig.create(features=["optical", "dem"]))
    assert train.count_params() == 10_032_068
    assert infer.count_params() == 10_031_938
    assert sorted(t.name for t in train.inputs) == ["dem", "optical"]


@pytest.mark.parametrize(
    "features",
    [["optical"], ["dem", "optical"], ["optical", "dem", "co_pol_sar", "in_sar", "thermal"]],
)
def test_any_subset_and_order_of_groups(features: list[str]) -> None:
    config = GlaViTUConfig.create(features=features, preset="tiny", patch_size=32)
    train, infer = build_glavitu(config)
    assert list(config.feature_groups) == features
    out = train(_inputs(config), training=False)
    assert out["output"].shape == (2, 32, 32, 2)
    assert out["deepsupervision"].shape == (2, 32, 32, 2)
    np.testing.assert_allclose(np.asarray(out["output"]).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(infer(_inputs(config))), np.asarray(out["output"]))


def test_inference_model_shares_weights() -> None:
    train, infer = build_glavitu(GlaViTUConfig.create(preset="tiny", patch_size=32))
    assert {id(w) for w in infer.weights} <= {id(w) for w in train.weights}
    assert len(train.weights) == len(infer.weights) + 2  # the deep-supervision kernel and bias


@pytest.mark.parametrize(
    ("encoding", "size", "expected"),
    [("region", 0, 12), ("region", 7, 7), ("coordinate", 0, 4)],
)
def test_location_input(encoding: str, size: int, expected: int) -> None:
    config = GlaViTUConfig.create(
        preset="tiny", patch_size=32, location_encoding=encoding, location_size=size
    )
    assert config.location_size == expected
    train, _ = build_glavitu(config)
    assert train.get_layer("location_encoding_block").weights[0].shape == (expected, 16)
    data = _inputs(config)
    a = np.asarray(train(data)["output"])
    data["location"] = data["location"][::-1].copy()
    assert not np.allclose(a, np.asarray(train(data)["output"]))


@pytest.mark.parametrize(
    "overrides",
    [
        {"patch_size": 40},
        {"patch_size": 0},
        {"dropout": 1.5},
        {"location_encoding": "coordinate", "location_size": 12},
        {"location_size": 5},
    ],
)
def test_bad_options_raise_config_error(overrides: dict) -> None:
    with pytest.raises(ConfigError, match="invalid model configuration"):
        GlaViTUConfig.create(preset="tiny", **overrides)


def test_unknown_group_and_preset() -> None:
    with pytest.raises(ConfigError, match="unknown feature group"):
        GlaViTUConfig.create(features=["optical", "lidar"])
    with pytest.raises(ConfigError, match="preset"):
        GlaViTUConfig.create(preset="huge")


def test_mc_dropout_switch() -> None:
    config = GlaViTUConfig.create(preset="tiny", patch_size=32)
    train, _ = build_glavitu(config)
    data = _inputs(config)
    # Published semantics: dropout is off even with training=True unless MC dropout is on.
    a = np.asarray(train(data, training=False)["output"])
    mc_train, _ = build_glavitu(config.model_copy(update={"mc_dropout": True}))
    mc_train.set_weights(train.get_weights())
    b = np.asarray(mc_train(data, training=False)["output"])
    c = np.asarray(mc_train(data, training=False)["output"])
    assert not np.allclose(b, c)
    assert not np.allclose(a, b)


def test_get_config_and_keras_round_trip(tmp_path) -> None:
    import keras

    config = GlaViTUConfig.create(
        features=["optical", "dem", "in_sar"],
        preset="tiny",
        patch_size=32,
        location_encoding="coordinate",
    )
    _, infer = build_glavitu(config)
    data = _inputs(config)
    expected = np.asarray(infer(data))
    path = tmp_path / "model.keras"
    infer.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(restored(data)), expected)
    clone = keras.Model.from_config(infer.get_config())
    clone.set_weights(infer.get_weights())
    np.testing.assert_array_equal(np.asarray(clone(data)), expected)
