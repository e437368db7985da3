"""glaviz optimise-bias: lowers the entropy, deterministic, sums to 1, refuses other models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from glaviz.cli.app import main
from glaviz.config import DeployConfig, OptimiseBiasConfig
from glaviz.engine.deploy import deploy
from glaviz.engine.region_vector import optimise_bias
from glaviz.errors import ConfigError, OutputExistsError
from tests.helpers import tiny_bundle, write_stack


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bias")
    stack = write_stack(root / "stack.tif", height=64, width=64, seed=4)
    model = tiny_bundle(
        root / "region.glaviz",
        location="region",
        seed=5,
        region_names=[f"R{i}" for i in range(11)] + ["unknown"],
    )
    return stack, model


def test_lowers_entropy_deterministically(scene, tmp_path) -> None:
    stack, model = scene
    kwargs = {"stack": stack, "weights": str(model), "epochs": 6, "batch_size": 2, "seed": 3}
    a = optimise_bias(OptimiseBiasConfig(output=tmp_path / "a.json", learning_rate=0.05, **kwargs))
    b = optimise_bias(OptimiseBiasConfig(output=tmp_path / "b.json", learning_rate=0.05, **kwargs))
    assert a.entropy_after < a.entropy_before
    assert a.region_vector == b.region_vector
    assert sum(a.region_vector) == pytest.approx(1.0, abs=1e-6)
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["region_vector"] == a.region_vector
    assert saved["regions"][-1] == "unknown" and len(saved["regions"]) == 12
    assert saved["entropy_before"] > saved["entropy_after"]
    # The vector feeds deploy directly.
    deploy(
        DeployConfig(
            stack=stack,
            weights=str(model),
            output=tmp_path / "out",
            region_vector=tmp_path / "a.json",
        )
    )
    assert (tmp_path / "out" / "outlines.tif").exists()


def test_published_defaults_stop_early_on_flat_objective(scene, tmp_path) -> None:
    stack, model = scene
    result = optimise_bias(
        OptimiseBiasConfig(
            stack=stack, weights=str(model), output=tmp_path / "rv.json", epochs=7, batch_size=2
        )
    )
    assert result.epochs <= 7 and len(result.region_vector) == 12
    assert np.all(np.asarray(result.region_vector) > 0)


def test_refuses_other_models_and_existing_output(scene, tmp_path, capsys) -> None:
    stack, _ = scene
    plain = tiny_bundle(tmp_path / "plain.glaviz")
    with pytest.raises(ConfigError, match="not a region-encoding model"):
        optimise_bias(
            OptimiseBiasConfig(stack=stack, weights=str(plain), output=tmp_path / "rv.json")
        )
    args = ["optimise-bias", str(stack), "--weights", str(plain), "-o", str(tmp_path / "x.json")]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("Error: ")
    existing = tmp_path / "exists.json"
    existing.write_text("{}")
    with pytest.raises(OutputExistsError):
        optimise_bias(OptimiseBiasConfig(stack=stack, weights=str(plain), output=existing))
