"""glaviz model bundles: save/reload equality, metadata, atomic writes, bad files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from glaviz.errors import OutputExistsError, WeightsError
from glaviz.model.bundle import (
    BundleMetadata,
    is_bundle,
    load_bundle,
    read_metadata,
    save_bundle,
)
from glaviz.model.glavitu import GlaViTUConfig, build_glavitu


@pytest.fixture
def tiny():
    config = GlaViTUConfig.create(
        features=["optical", "dem"], preset="tiny", patch_size=32, location_encoding="region"
    )
    train, infer = build_glavitu(config)
    rng = np.random.default_rng(3)
    # Non-default values everywhere, moving statistics included, so a lost tensor shows up.
    train.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in train.weights])
    for w in train.weights:
        if "moving_variance" in w.path:
            w.assign(np.abs(np.asarray(w)) + 0.5)
    return config, train, infer


def test_round_trip_identical(tmp_path: Path, tiny) -> None:
    config, train, infer = tiny
    rng = np.random.default_rng(0)
    data = {g: rng.random((2, 32, 32, c), np.float32) for g, c in config.feature_groups.items()}
    data["location"] = np.eye(12, dtype=np.float32)[[0, 11]]
    meta = BundleMetadata(
        architecture=config,
        normalization={"optical": {"min": [0.0] * 6, "max": [1.0] * 6}},
        region_names=["ALP", "unknown"],
        calibration={"method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 1.0]},
        source="unit test",
    )
    path = save_bundle(tmp_path / "m.glaviz", train, meta)
    assert is_bundle(path)
    assert not list(tmp_path.glob("*.part"))
    loaded = load_bundle(path)
    assert loaded.metadata == read_metadata(path)
    assert loaded.metadata.feature_groups == {"optical": 6, "dem": 2}
    assert loaded.metadata.region_names == ["ALP", "unknown"]
    np.testing.assert_array_equal(np.asarray(loaded.inference_model(data)), np.asarray(infer(data)))
    for a, b in zip(loaded.train_model.weights, train.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with zipfile.ZipFile(path) as archive:
        assert not any(n.endswith((".pkl", ".pickle")) for n in archive.namelist())


def test_refuses_overwrite(tmp_path: Path, tiny) -> None:
    config, train, _ = tiny
    path = save_bundle(tmp_path / "m.glaviz", train, BundleMetadata(architecture=config))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        save_bundle(path, train, BundleMetadata(architecture=config))
    save_bundle(path, train, BundleMetadata(architecture=config), overwrite=True)


def test_bad_bundles(tmp_path: Path, tiny) -> None:
    config, train, _ = tiny
    not_zip = tmp_path / "a.glaviz"
    not_zip.write_text("hello")
    assert not is_bundle(not_zip)
    with pytest.raises(WeightsError, match="not a readable glaviz bundle"):
        read_metadata(not_zip)
    future = tmp_path / "future.glaviz"
    meta = BundleMetadata(architecture=config, format_version=99)
    with zipfile.ZipFile(future, "w") as archive:
        archive.writestr("glaviz.json", meta.model_dump_json())
    with pytest.raises(WeightsError, match="upgrade glaviz"):
        read_metadata(future)
    # Metadata promising another architecture than the weights hold.
    path = save_bundle(tmp_path / "m.glaviz", train, BundleMetadata(architecture=config))
    lying = tmp_path / "lying.glaviz"
    other = config.model_copy(update={"feature_groups": {"optical": 6}})
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(lying, "w") as dst:
        dst.writestr("glaviz.json", BundleMetadata(architecture=other).model_dump_json())
        dst.writestr("model.weights.h5", src.read("model.weights.h5"))
    with pytest.raises(WeightsError, match="do not load"):
        load_bundle(lying)
