"""``glaviz features --from-published``: the allow-list unpickler and the conversion to a stack.

The published files are made here the way the authors' ``compile_features.py`` makes them (read
each raster, NaN optical → 0, min-max normalise with the benchmark statistics, lat/lon grids,
centred zero padding to multiples of 384, pickle of ``(features, attrs)`` with the optical
raster's ``meta``), from the same rasters ``glaviz features`` reads.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from glaviz.cli.app import main
from glaviz.config import DeployConfig, FeaturesConfig
from glaviz.engine.deploy import deploy
from glaviz.errors import InputError, OutputExistsError
from glaviz.features import compile_stack, convert_published, load_published
from glaviz.features.published import AffineState, PublishedUnpickler
from glaviz.published.normalisation import NormalisationStats
from glaviz.samples import make_scene
from tests.helpers import error_line, tiny_bundle

PUBLISHED_PATCH = 384


def published_stats() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``dataset_stats.pickle`` as ``compile_features.py`` indexes it (elevation, slope apart)."""
    stats = NormalisationStats.published()
    mins = {g: stats.min[g] for g in stats.groups if g != "dem"}
    maxs = {g: stats.max[g] for g in stats.groups if g != "dem"}
    mins["elevation"], mins["slope"] = stats.min["dem"][:1], stats.min["dem"][1:]
    maxs["elevation"], maxs["slope"] = stats.max["dem"][:1], stats.max["dem"][1:]
    return mins, maxs


def compile_features(
    *, optical: Path, elevation: Path, slope: Path, sar: Path | None = None
) -> tuple[dict, dict]:
    """``(features, attrs)`` made as the published script makes them (no cv2: the rasters here
    share the optical grid, where its resize is the identity)."""
    mins, maxs = published_stats()
    with rasterio.open(optical) as src:
        meta = src.meta
        data = np.stack([src.read(i + 1) for i in range(src.count)], axis=-1)
        data = np.where(~np.isnan(data), data, 0)
        data = (data - mins["optical"]) / (maxs["optical"] - mins["optical"])
    height, width, _ = data.shape
    meta["dtype"] = None
    meta["count"] = -1
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    xs, ys = rasterio.transform.xy(meta["transform"], rows, cols)
    to_wgs84 = Transformer.from_crs(meta["crs"], "EPSG:4326", always_xy=True)
    xs, ys = to_wgs84.transform(np.reshape(xs, (-1,)), np.reshape(ys, (-1,)))
    with rasterio.open(elevation) as src:
        elev = (src.read(1) - mins["elevation"]) / (maxs["elevation"] - mins["elevation"])
    with rasterio.open(slope) as src:
        slo = (src.read(1) - mins["slope"]) / (maxs["slope"] - mins["slope"])
    features = {
        "optical": data,
        "dem": np.stack([elev, slo], axis=-1),
        "lat": np.reshape(np.array(ys), (height, width, 1)),
        "lon": np.reshape(np.array(xs), (height, width, 1)),
    }
    if sar is not None:
        with rasterio.open(sar) as src:
            arr = np.log10(np.moveaxis(src.read(), 0, -1) + 1e-6)
            features["co_pol_sar"] = (arr - mins["co_pol_sar"]) / (
                maxs["co_pol_sar"] - mins["co_pol_sar"]
            )
    th = PUBLISHED_PATCH * int(height // PUBLISHED_PATCH + 1)
    tw = PUBLISHED_PATCH * int(width // PUBLISHED_PATCH + 1)
    ph, pw = (th - height) // 2, (tw - width) // 2
    for name, arr in features.items():
        padded = np.zeros((th, tw, arr.shape[-1]))
        padded[ph : ph + height, pw : pw + width, :] = arr
        features[name] = padded
    attrs = {"height": height, "width": width, "pad_height": ph, "pad_width": pw, "meta": meta}
    return features, attrs


def compile_features_pickle(path: Path, **rasters: Path | None) -> Path:
    """A ``compile_features.py`` output file (protocol 4: the authors' Python 3.10 default)."""
    path.write_bytes(pickle.dumps(compile_features(**rasters), protocol=4))
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Raw rasters, the stack glaviz makes of them, and the published file made of them."""
    root = tmp_path_factory.mktemp("published")
    files = make_scene(root / "raw", size=(101, 130), seed=3)  # odd height: uneven padding
    stack = compile_stack(
        output=root / "raw_stack.tif", optical=files.optical, elevation=files.elevation
    ).path
    with rasterio.open(stack) as src:  # compile_features.py takes slope as an input raster
        profile = {**src.profile, "count": 1}
        slope = root / "raw" / "slope.tif"
        with rasterio.open(slope, "w", **profile) as dst:
            dst.write(src.read(8), 1)
    pickled = compile_features_pickle(
        root / "area_features.pickle", optical=files.optical, elevation=files.elevation, slope=slope
    )
    rasters = {"optical": files.optical, "elevation": files.elevation, "slope": slope}
    return {"stack": stack, "pickle": pickled, "root": root, "rasters": rasters}


def test_stack_matches_raw_rasters_and_deploys_to_same_outlines(scene, tmp_path) -> None:
    converted = convert_published(source=scene["pickle"], output=tmp_path / "stack.tif")
    assert converted.bands == (*(f"optical:{i}" for i in range(1, 7)), "elevation", "slope")
    with rasterio.open(scene["stack"]) as raw, rasterio.open(converted.path) as new:
        assert (new.crs, new.transform, new.shape) == (raw.crs, raw.transform, raw.shape)
        assert new.descriptions == raw.descriptions and new.dtypes[0] == "float32"
        assert new.profile["tiled"] and new.profile["compress"] == "deflate"
        a, b = raw.read(), new.read()
        assert np.isnan(a[:6]).any()  # the scene has invalid optical pixels …
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))  # … and they come back as NaN
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
        assert "from_published" in new.tags()["GLAVIZ_INPUTS"]

    bundle = tiny_bundle(tmp_path / "tiny.glaviz")
    outlines = {}
    for name, stack in (("raw", scene["stack"]), ("published", converted.path)):
        deploy(DeployConfig(stack=stack, weights=str(bundle), output=tmp_path / name, vector=False))
        with rasterio.open(tmp_path / name / "outlines.tif") as src:
            outlines[name] = src.read(1)
    assert (outlines["raw"] == 255).any() and (outlines["raw"] == 1).any()
    np.testing.assert_array_equal(outlines["published"], outlines["raw"])


def test_sar_is_inverted_from_log10(scene, tmp_path) -> None:
    rng = np.random.default_rng(0)
    with rasterio.open(scene["stack"]) as src:
        profile = {**src.profile, "count": 2}
        shape = src.shape
    sigma0 = rng.uniform(0.01, 0.5, (2, *shape)).astype(np.float32)
    sar = tmp_path / "sar.tif"
    with rasterio.open(sar, "w", **profile) as dst:
        dst.write(sigma0)
    pickled = compile_features_pickle(tmp_path / "f.pickle", **scene["rasters"], sar=sar)
    result = convert_published(source=pickled, output=tmp_path / "s.tif")
    assert result.groups == ("optical", "dem", "co_pol_sar")
    with rasterio.open(result.path) as src:
        assert src.descriptions[-2:] == ("co_pol_sar:1", "co_pol_sar:2")
        np.testing.assert_allclose(src.read((9, 10)), sigma0, rtol=1e-5)


def test_cli_and_config(scene, tmp_path, capsys) -> None:
    out = tmp_path / "cli.tif"
    assert main(["features", "--from-published", str(scene["pickle"]), "-o", str(out)]) == 0
    assert "8 bands (optical, dem)" in " ".join(capsys.readouterr().out.split())
    assert (
        main(["features", "--from-published", str(scene["pickle"]), "-o", str(out)])
        == OutputExistsError.exit_code
    )
    assert "--overwrite" in error_line(capsys)
    mixed = ["features", "--from-published", str(scene["pickle"]), "--optical", "o.tif"]
    assert main([*mixed, "-o", str(tmp_path / "m.tif")]) == 2
    assert "drop optical" in error_line(capsys)
    assert main(["features", "-o", str(tmp_path / "n.tif"), "--optical", "o.tif"]) == 2
    assert "elevation required" in error_line(capsys)
    assert not list(tmp_path.glob(".*"))
    assert FeaturesConfig(output=out, from_published=scene["pickle"]).inputs() == {}
    with pytest.raises(OutputExistsError):
        convert_published(source=scene["pickle"], output=out)


# --------------------------------------------------------------------------------------------------
# The unpickler


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_os_system_is_refused_without_running(scene, tmp_path, capsys) -> None:
    marker = tmp_path / "ran"
    features, attrs = compile_features(**scene["rasters"])
    features["optical"] = _RunsCommand(f"touch {marker}")
    evil = tmp_path / "evil_features.pickle"
    evil.write_bytes(pickle.dumps((features, attrs), protocol=4))
    with pytest.raises(InputError, match=r"(posix|os)\.system"):
        load_published(evil)
    assert not marker.exists()
    out = tmp_path / "evil.tif"
    assert main(["features", "--from-published", str(evil), "-o", str(out)]) == 1
    line = error_line(capsys)
    assert "system" in line and "refusing" in line
    assert not marker.exists() and not out.exists() and not list(tmp_path.glob(".evil*"))


@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("subprocess", "Popen"),
        ("copyreg", "_reconstructor"),
        ("numpy", "load"),
        ("numpy.lib.npyio", "load"),
        ("pickle", "loads"),
        ("rasterio", "open"),
        ("glaviz.features.published", "AffineState"),
    ],
)
def test_other_globals_are_refused(tmp_path, module: str, name: str) -> None:
    path = tmp_path / "x.pickle"
    # Protocol 2: GLOBAL module name, MARK, TUPLE, REDUCE: the call would come after find_class.
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"(tR.")
    with pytest.raises(InputError, match=re.escape(f"{module}.{name}")):
        load_published(path)


def test_large_arrays_stay_in_the_file(scene) -> None:
    data = load_published(scene["pickle"])
    assert all(isinstance(a, np.memmap) for a in data.arrays.values())  # not copied into RAM
    assert data.arrays["optical"].shape == (384, 384, 6) and data.crs.to_epsg() == 32632
    strip = data.rows("optical", 0, 10)
    assert strip.shape == (10, 130, 6) and not isinstance(strip, np.memmap)


def test_state_of_classes_and_functions_is_not_set(tmp_path) -> None:
    # BUILD with a (None, {attribute: value}) state would setattr on the class AffineState.
    path = tmp_path / "x.pickle"
    raw = b"\x80\x02caffine\nAffine\n(N}X\x09\x00\x00\x00to_affineK\x01stb."
    path.write_bytes(raw)
    with pytest.raises(InputError, match="refusing to set the state of a type"):
        load_published(path)
    assert callable(AffineState.to_affine)


def test_damaged_files(scene, tmp_path) -> None:
    data = scene["pickle"].read_bytes()
    truncated = tmp_path / "t.pickle"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_published(truncated)
    text = tmp_path / "t.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a pickle"):
        load_published(text)
    with pytest.raises(InputError, match="does not exist"):
        load_published(tmp_path / "missing.pickle")
    wrong = tmp_path / "w.pickle"
    wrong.write_bytes(pickle.dumps({"optical": np.zeros((3, 3, 6))}))
    with pytest.raises(InputError, match=r"not a compile_features\.py output"):
        load_published(wrong)
    features, attrs = compile_features(**scene["rasters"])
    del features["dem"]
    wrong.write_bytes(pickle.dumps((features, attrs)))
    with pytest.raises(InputError, match="lack dem"):
        load_published(wrong)


def _load(raw: bytes) -> object:
    return PublishedUnpickler(io.BytesIO(raw), path=Path("test.pickle")).load()


def test_affine_of_both_library_versions() -> None:
    values = (10.0, 0.0, 400000.0, 0.0, -10.0, 5100000.0)
    # affine 2.x (namedtuple, the authors' 2.4.0): the nine values are NEWOBJ arguments.
    floats = b"".join(b"G" + struct.pack(">d", v) for v in (*values, 0.0, 0.0, 1.0))
    old = _load(b"\x80\x02caffine\nAffine\n(" + floats + b"t\x81.")
    assert isinstance(old, AffineState) and old.to_affine() == Affine(*values)
    # affine 3.x (attrs): six arguments and a state dict; and the numpy scalar path.
    new = _load(pickle.dumps([Affine(*values), np.float64(2.5), np.int32(3)], protocol=4))
    assert new[0].to_affine() == Affine(*values) and new[1:] == [2.5, 3]
    array = np.arange(12.0).reshape(2, 3, 2)
    for protocol in (2, 4, 5):
        np.testing.assert_array_equal(_load(pickle.dumps(array, protocol=protocol)), array)


def test_self_referencing_structure_is_an_error(tmp_path) -> None:
    path = tmp_path / "loop.pickle"
    loop: list = []
    loop.append(loop)
    path.write_bytes(pickle.dumps((loop, {}), protocol=4))
    with pytest.raises(InputError, match=r"not a compile_features\.py output|RecursionError"):
        load_published(path)


@pytest.mark.parametrize("protocol", [2, 5])
def test_other_protocols_load_within_the_limits(scene, tmp_path, protocol: int) -> None:
    # Protocol 2 passes every array's bytes through _codecs.encode, protocol 5 through
    # _frombuffer: both are charged to the file's limits, which a real file stays within.
    features, attrs = compile_features(**scene["rasters"])
    path = tmp_path / "p.pickle"
    path.write_bytes(pickle.dumps((features, attrs), protocol=protocol))
    data = load_published(path)
    np.testing.assert_array_equal(data.arrays["optical"], features["optical"])
    assert data.height == attrs["height"] and data.crs == attrs["meta"]["crs"]


def test_repeated_text_is_charged_to_the_file() -> None:
    # One WKT string parsed again and again through pickle's memo: the 3 bytes of each repeat
    # cost a full parse, so the work is charged and runs out of what the file can justify.
    wkt = rasterio.crs.CRS.from_epsg(32632).to_wkt().encode()
    crs = b"\x8c\x0crasterio.crs\x8c\x03CRS\x93)\x81"  # CRS.__new__(CRS)
    text = b"X" + struct.pack("<I", len(wkt)) + wkt + b"\x94"  # BINUNICODE, memo 0
    raw = b"\x80\x04" + crs + text + b"b" + b"h\x00b" * 5000 + b"."
    with pytest.raises(pickle.UnpicklingError, match="more than the file of"):
        _load(raw)
    assert isinstance(_load(b"\x80\x04" + crs + text + b"b."), rasterio.crs.CRS)


def test_keys_are_plain_values() -> None:
    # A published file's dict keys are strings; a tuple key could nest deep enough to crash
    # Python's hash, so containers as keys or set members are refused.
    with pytest.raises(pickle.UnpicklingError, match="uses a tuple as a dict key"):
        _load(b"\x80\x04}K\x00\x85\x85Ns.")
    with pytest.raises(pickle.UnpicklingError, match="uses a tuple as a dict key"):
        _load(pickle.dumps(frozenset({(1, 2)}), protocol=4))
    assert _load(pickle.dumps({"a": 1, 2: frozenset({"b"})}, protocol=4)) == {
        "a": 1,
        2: frozenset({"b"}),
    }
