"""Batch norm folded into convolutions for inference: same predictions, no training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from glaviz.engine.inference import policy_scope
from glaviz.engine.loading import load_for_inference
from glaviz.model import layers as gl
from glaviz.model.folding import FoldedModelError, FoldedUpConv, fold_batch_norm, fold_upconv
from glaviz.model.glavitu import GlaViTUConfig, build_glavitu
from tests.helpers import tiny_bundle


def _model(policy: str = "float32", seed: int = 3) -> tuple[GlaViTUConfig, keras.Model]:
    """A reduced GlaViTU whose batch norms all do something (non-trivial moving statistics)."""
    config = GlaViTUConfig.create(features=["optical", "dem"], preset="tiny", patch_size=64)
    with policy_scope(policy):
        train, infer = build_glavitu(config)
    _randomise(train, seed)
    return config, infer


def _randomise(model: keras.Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0, 0.2, w.shape)
        if "moving_variance" in w.path:
            value = np.abs(value) + 0.5
        elif "gamma" in w.path:
            value = value + 1.0
        w.assign(value.astype(np.float32))


def _inputs(config: GlaViTUConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = config.patch_size
    return {
        g: rng.normal(size=(2, p, p, c)).astype(np.float32)
        for g, c in config.feature_groups.items()
    }


def test_folded_model_predicts_as_before() -> None:
    config, infer = _model()
    x = _inputs(config)
    before = np.asarray(infer(x, training=False))
    # tiny preset: 2 fusion branches + 3 encoder + 2 decoder blocks (2 each), 2 up-convolutions,
    # 4 SETR decoder stages
    assert fold_batch_norm(infer) == 2 * 7 + 2 + 4
    after = np.asarray(infer(x, training=False))
    np.testing.assert_allclose(after, before, atol=2e-6)
    assert fold_batch_norm(infer) == 0  # folding twice would scale the kernels twice
    np.testing.assert_allclose(np.asarray(infer(x, training=False)), after, atol=1e-7)


@pytest.mark.parametrize("shape", [(1, 4, 4, 8), (2, 6, 10, 3)])
def test_low_resolution_upconv_equals_upsampled_convolution(shape: tuple[int, ...]) -> None:
    layer = gl.UpConv(5)
    layer.build(shape)
    _randomise(layer, seed=sum(shape))
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    expected = np.asarray(layer(x, training=False))
    folded = fold_upconv(layer.conv, layer.bn)
    np.testing.assert_allclose(np.asarray(folded(x)), expected, atol=1e-5)


def test_float32_keeps_the_upsampled_convolution_and_bfloat16_does_not() -> None:
    # float32 must round as the published model does (see UpConv.fold_batch_norm)
    for policy, low_resolution in (("float32", False), ("mixed_bfloat16", True)):
        _, infer = _model(policy)
        fold_batch_norm(infer)
        upconvs = [layer for layer in infer._flatten_layers() if isinstance(layer, gl.UpConv)]
        assert upconvs
        assert all(isinstance(u._folded, FoldedUpConv) == low_resolution for u in upconvs)


def test_folded_bfloat16_stays_as_close_to_float32_as_unfolded() -> None:
    config, reference = _model("float32")
    x = _inputs(config)
    expected = np.asarray(reference(x, training=False))
    errors = []
    for fold in (False, True):
        _, infer = _model("mixed_bfloat16")
        if fold:
            fold_batch_norm(infer)
        errors.append(np.abs(np.asarray(infer(x, training=False)) - expected).mean())
    assert errors[1] <= 1.5 * errors[0] + 1e-3


def test_folded_layers_refuse_to_train() -> None:
    config, infer = _model()
    fold_batch_norm(infer)
    with pytest.raises(FoldedModelError, match="cannot train"):
        infer(_inputs(config), training=True)


def test_models_loaded_for_inference_are_folded(tmp_path) -> None:
    model = load_for_inference(tiny_bundle(tmp_path / "tiny.glaviz"))
    blocks = [layer for layer in model.model._flatten_layers() if isinstance(layer, gl.ConvBNx2)]
    assert blocks and all(block._folded for block in blocks)
