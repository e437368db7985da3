"""Import of the published Keras 2 checkpoint: reference outputs, inspection, errors.

Tests of the published file itself (its outputs, its tensor names) need ``../shared/reference``;
inspection and the other error paths run on a paper-size checkpoint generated in the published
layout (``tests.helpers.write_keras2_checkpoint``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from glaviz.errors import WeightsError
from glaviz.model.checkpoint import inspect_checkpoint, load_checkpoint, verify_checkpoint
from glaviz.model.glavitu import GlaViTUConfig
from tests.helpers import write_keras2_checkpoint


@pytest.fixture(scope="module")
def published_format(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paper-size optical+dem checkpoint in the published Keras 2 layout, seeded weights."""
    path = tmp_path_factory.mktemp("ckpt") / "glavitu_global_weights.h5"
    return write_keras2_checkpoint(path, preset="paper", seed=3)


@pytest.fixture(scope="module")
def loaded(reference_weights: Path):
    return load_checkpoint(reference_weights)


def test_inspect_reads_architecture(published_format: Path) -> None:
    info = inspect_checkpoint(published_format)
    assert info.feature_groups == {"optical": 6, "dem": 2}
    assert info.location_size is None
    assert info.patch_size == 384
    assert info.config == GlaViTUConfig.create(features=["optical", "dem"])
    assert info.keras_version.startswith("2.")


def test_reference_patch_matches_published_outputs(loaded, reference_dir: Path) -> None:
    train, infer, _ = loaded
    ref = np.load(reference_dir / "expected" / "patch_global.npz")
    out = train({"optical": ref["in_optical"], "dem": ref["in_dem"]}, training=False)
    for head in ("output", "deepsupervision"):
        diff = np.abs(np.asarray(out[head]) - ref[head])
        assert diff.max() <= 2e-3, head
        assert diff.mean() <= 2e-5, head
    only = np.asarray(infer({"optical": ref["in_optical"], "dem": ref["in_dem"]}))
    np.testing.assert_array_equal(only, np.asarray(out["output"]))


def test_every_tensor_is_assigned(loaded, reference_weights: Path) -> None:
    train, _, _ = loaded
    with h5py.File(reference_weights) as f:
        stored = {
            float(np.asarray(f[g][w]).ravel()[0])
            for g in f.attrs["layer_names"]
            for w in f[g].attrs.get("weight_names", [])
        }
    # Each model variable holds a value from the file (first element as a fingerprint).
    firsts = {float(np.asarray(v).ravel()[0]) for v in train.weights}
    assert firsts <= stored
    assert len(train.weights) == 365


def test_not_hdf5(tmp_path: Path) -> None:
    bad = tmp_path / "weights.h5"
    bad.write_text("<html>Google Drive: virus scan warning</html>")
    with pytest.raises(WeightsError, match="not a readable HDF5"):
        inspect_checkpoint(bad)


def test_truncated(tmp_path: Path, published_format: Path) -> None:
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(published_format.read_bytes()[: published_format.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"truncated|damaged"):
        load_checkpoint(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        inspect_checkpoint(tmp_path / "nope.h5")


def test_other_feature_set_names_first_tensor(reference_weights: Path) -> None:
    config = GlaViTUConfig.create(features=["optical", "dem", "in_sar"])
    with pytest.raises(WeightsError) as err:
        load_checkpoint(reference_weights, config=config)
    message = str(err.value)
    assert "fusion_block/dense/kernel:0" in message
    assert "(3, 3, 2, 64)" in message and "(64, 64)" in message
    assert "optical(6)+dem(2)" in message


def test_wrong_location_size(published_format: Path) -> None:
    with pytest.raises(WeightsError, match="location input size 0, expected 12"):
        verify_checkpoint(published_format, location_size=12)
    with pytest.raises(WeightsError, match="not the expected optical"):
        verify_checkpoint(published_format, feature_groups={"optical": 6, "thermal": 1})


def test_tensor_of_wrong_shape(tmp_path: Path, reference_weights: Path) -> None:
    bad = tmp_path / "other.h5"
    shutil.copy(reference_weights, bad)
    with h5py.File(bad, "r+") as f:
        name = "conv2d_4/kernel:0"
        del f["SETR"][name]
        f["SETR"].create_dataset(name, data=np.zeros((1, 1, 64, 32), np.float32))
    with pytest.raises(WeightsError, match=r"conv2d_4/kernel:0 does not fit.*\(1, 1, 64, 64\)"):
        load_checkpoint(bad)


def test_not_glavitu(tmp_path: Path) -> None:
    other = tmp_path / "unet.h5"
    with h5py.File(other, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv"], dtype=object)
        g = f.create_group("conv")
        g.attrs["weight_names"] = np.array([b"conv/kernel:0"], dtype=object)
        g.create_dataset("conv/kernel:0", data=np.zeros((3, 3, 1, 8), np.float32))
    with pytest.raises(WeightsError, match="not a GlaViTU checkpoint"):
        inspect_checkpoint(other)
