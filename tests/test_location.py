"""One location encoder: published region names everywhere, radians for coordinates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from glaviz.published.groups import REGIONS
from glaviz.published.location import (
    UNKNOWN_REGION,
    LocationEncoder,
    coordinates,
    published_region_order,
    region_names,
)

PUBLISHED = [*sorted(REGIONS), UNKNOWN_REGION]


def test_published_order_comes_from_the_registry() -> None:
    from glaviz.registry.catalogue import load_registry

    entry = load_registry().require("region-encoding")
    assert list(published_region_order()) == list(entry.region_order) == sorted(REGIONS)


def test_region_names_one_convention() -> None:
    assert region_names(12) == PUBLISHED
    assert region_names(12, known=sorted(REGIONS)) == PUBLISHED  # registry order, no unknown
    named = [f"R{i}" for i in range(11)] + [UNKNOWN_REGION]
    assert region_names(12, known=named) == named  # a bundle's own names
    assert region_names(3) == ["region1", "region2", UNKNOWN_REGION]
    assert region_names(3, known=["A", "B", "C", "D"]) == ["region1", "region2", UNKNOWN_REGION]


def test_encoder_one_hot_and_radians() -> None:
    enc = LocationEncoder("region", tuple(PUBLISHED))
    assert enc.region("HMA")[PUBLISHED.index("HMA")] == 1 and enc.region("HMA").sum() == 1
    assert enc.region("Mars")[-1] == 1
    np.testing.assert_allclose(coordinates(90.0, 180.0), [1, 0, 0, -1], atol=1e-6)


def published_region_checkpoint(reference: Path, target: Path) -> Path:
    """A region-encoding checkpoint in the published Keras 2 format: the reference global
    weights plus a ``location_encoding_block`` group for a 12-slot location input."""
    from glaviz.model.checkpoint import published_order
    from glaviz.model.layers import LocationEncoding

    shutil.copy(reference, target)
    layer = LocationEncoding(64, name="location_encoding_block")
    layer.build((None, 12))
    rng = np.random.default_rng(0)
    with h5py.File(target, "r+") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        f.attrs["layer_names"] = np.array(
            [*names[:2], "location", "location_encoding_block", *names[2:]], dtype="S"
        )
        f.create_group("location")
        group = f.create_group("location_encoding_block")
        weight_names = []
        for variable in published_order(layer):
            part = variable.path.split("/", 1)[1]  # e.g. dense1/kernel
            name = f"location_encoding_block/{part}:0"
            value = rng.normal(0, 0.05, tuple(variable.shape)).astype(np.float32)
            if part.endswith("moving_variance"):
                value = np.abs(value) + 1.0
            group.create_dataset(name, data=value)
            weight_names.append(name.encode())
        group.attrs["weight_names"] = np.array(weight_names, dtype=object)
    return target


@pytest.mark.slow
def test_optimise_bias_with_a_published_checkpoint_by_path_writes_published_names(
    reference_weights: Path, tmp_path: Path
) -> None:
    from glaviz.config import OptimiseBiasConfig
    from glaviz.engine.loading import load_for_inference
    from glaviz.engine.region_vector import optimise_bias
    from tests.helpers import write_stack

    weights = published_region_checkpoint(reference_weights, tmp_path / "my_region_model.h5")
    model = load_for_inference(weights)
    assert model.registry_name is None and model.config.location_size == 12
    assert model.region_names == PUBLISHED
    stack = write_stack(tmp_path / "stack.tif", height=40, width=40)
    out = tmp_path / "rv.json"
    config = OptimiseBiasConfig(
        stack=stack, weights=str(weights), output=out, epochs=1, batch_size=1
    )
    result = optimise_bias(config)
    assert result.regions == PUBLISHED
    assert json.loads(out.read_text())["regions"] == PUBLISHED
