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


# --------------------------------------------------------------------------------------------------
# Hostile weights inside a well-formed bundle: refused from the HDF5 headers, before any read


def _bundle_with_weights(hostile: Path, train, config, edit) -> Path:
    """``hostile``: a bundle of ``train`` whose weights file ``edit(h5py.File)`` has changed."""
    import h5py

    meta = BundleMetadata(architecture=config)
    path = save_bundle(hostile.with_suffix(".valid.glaviz"), train, meta)
    weights = hostile.with_suffix(".h5")
    with zipfile.ZipFile(path) as src:
        weights.write_bytes(src.read("model.weights.h5"))
    with h5py.File(weights, "a") as f:
        edit(f)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(hostile, "w", zipfile.ZIP_DEFLATED) as dst:
        dst.writestr("glaviz.json", src.read("glaviz.json"))
        dst.write(weights, "model.weights.h5")
    return hostile


def _first_kernel(train) -> str:
    return next(w.path for w in train.weights if w.path.endswith("kernel"))


def test_weights_declaring_huge_shapes_are_refused_unread(tmp_path: Path, tiny) -> None:
    config, train, _ = tiny
    name = _first_kernel(train)

    def huge(f) -> None:  # 4 TiB declared, nothing written: the file stays small
        del f[name]
        f.create_dataset(name, shape=(1 << 40,), dtype="f4", chunks=(1 << 16,))

    hostile = _bundle_with_weights(tmp_path / "huge.glaviz", train, config, huge)
    assert hostile.stat().st_size < 10 << 20
    with pytest.raises(WeightsError, match=rf"{name} has shape \(1099511627776,\)"):
        load_bundle(hostile)

    def extra(f) -> None:
        f.create_dataset("not/a/variable", shape=(1 << 40,), dtype="f4", chunks=(1 << 16,))

    hostile = _bundle_with_weights(tmp_path / "extra.glaviz", train, config, extra)
    with pytest.raises(WeightsError, match="unexpected tensor not/a/variable"):
        load_bundle(hostile)


def test_weights_stored_outside_the_bundle_are_refused(tmp_path: Path, tiny) -> None:
    config, train, _ = tiny
    name = _first_kernel(train)
    shape = next(tuple(w.shape) for w in train.weights if w.path == name)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(bytes(4 * int(np.prod(shape))))

    def external(f) -> None:
        del f[name]
        f.create_dataset(
            name, shape=shape, dtype="f4", external=[(str(outside), 0, outside.stat().st_size)]
        )

    hostile = _bundle_with_weights(tmp_path / "external.glaviz", train, config, external)
    with pytest.raises(WeightsError, match=f"{name} refers to data outside the bundle"):
        load_bundle(hostile)


def test_failed_load_leaves_no_temporary_files(tmp_path: Path, tiny, monkeypatch) -> None:
    import tempfile

    config, _, _ = tiny
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    damaged = tmp_path / "damaged.glaviz"
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr("glaviz.json", BundleMetadata(architecture=config).model_dump_json())
        archive.writestr("model.weights.h5", b"not HDF5 " * 100)
    with pytest.raises(WeightsError, match="damaged"):
        load_bundle(damaged)
    assert not list(scratch.iterdir())


def test_members_beyond_the_format_are_refused(tmp_path: Path, tiny) -> None:
    config, train, _ = tiny
    path = save_bundle(tmp_path / "m.glaviz", train, BundleMetadata(architecture=config))
    extra = tmp_path / "extra.glaviz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(extra, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("run.py", "import os")
    with pytest.raises(WeightsError, match=r"member run\.py is not part of a format 1 bundle"):
        read_metadata(extra)
    # A zip that lists thousands of members is not even listed to decide whether it is a bundle.
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(2000):
            archive.writestr(f"m{i}", b"")
    assert not is_bundle(many)
    assert is_bundle(many.rename(tmp_path / "many.glaviz"))  # named as one: the checks explain
    with pytest.raises(WeightsError, match="2000 members"):
        read_metadata(tmp_path / "many.glaviz")
