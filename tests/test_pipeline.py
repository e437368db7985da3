"""The model's input pipeline: statistics, normalisation, stack layout, and the reference scene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from glaviz.errors import ConfigError, InputError
from glaviz.features import compile_stack
from glaviz.published.groups import GROUP_BANDS, GROUP_STACK_BANDS
from glaviz.published.normalisation import (
    NormalisationStats,
    normalise,
    normalise_group,
    valid_mask,
)
from glaviz.published.stack_layout import StackLayout

PUBLISHED_JSON = Path(__file__).resolve().parents[1] / "glaviz" / "data"


def test_published_stats_cover_every_group() -> None:
    stats = NormalisationStats.published()
    assert stats.groups == tuple(GROUP_BANDS)
    for group, n in GROUP_BANDS.items():
        lo, hi = stats.bounds(group)
        assert lo.shape == hi.shape == (n,) and np.all(hi > lo)
    raw = json.loads((PUBLISHED_JSON / "normalization.json").read_text())
    assert stats.min["dem"].tolist() == raw["min"]["elevation"] + raw["min"]["slope"]
    assert stats.max["dem"].tolist() == raw["max"]["elevation"] + raw["max"]["slope"]
    assert NormalisationStats.published() is stats  # loaded once


def test_stats_round_trip_and_bundle_layout() -> None:
    stats = NormalisationStats.published()
    as_dict = stats.to_dict()
    assert set(as_dict["dem"]) == {"min", "max"} and len(as_dict["optical"]["min"]) == 6
    again = NormalisationStats.from_dict(json.loads(json.dumps(as_dict)))
    for g in stats.groups:
        np.testing.assert_array_equal(again.min[g], stats.min[g])
        np.testing.assert_array_equal(again.max[g], stats.max[g])
    subset = NormalisationStats.from_dict({"optical": as_dict["optical"], "dem": as_dict["dem"]})
    assert subset.groups == ("optical", "dem")
    with pytest.raises(ConfigError, match="in_sar"):
        subset.bounds("in_sar")
    with pytest.raises(ValueError):
        stats.min["optical"][0] = 1.0  # read-only arrays


def test_stats_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    path.write_text(json.dumps({"thermal": {"min": [200], "max": [300]}}))
    assert NormalisationStats.from_json(path).groups == ("thermal",)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"optical": {"min": [0] * 5, "max": [1] * 5}}, "6 bands"),
        ({"optical": {"min": [1] * 6, "max": [1] * 6}}, "max > min"),
        ({"radar": {"min": [0], "max": [1]}}, "unknown group radar"),
        ({"thermal": [0, 1]}, "must be"),
    ],
)
def test_invalid_stats_are_config_errors(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NormalisationStats.from_dict(data)


def test_normalise_optical_nan_to_zero_first() -> None:
    stats = NormalisationStats.published()
    lo, hi = stats.bounds("optical")
    x = np.full((2, 3, 6), 0.5, np.float32)
    x[0, 0] = np.nan
    out = normalise_group("optical", x, stats)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out[0, 0], (0 - lo) / (hi - lo), rtol=1e-6)
    np.testing.assert_allclose(out[1, 2], (0.5 - lo) / (hi - lo), rtol=1e-6)


def test_normalise_sar_is_log_scaled_and_other_nan_kept() -> None:
    stats = NormalisationStats.published()
    lo, hi = stats.bounds("co_pol_sar")
    sigma0 = np.array([[[0.0, 0.01]]])
    out = normalise_group("co_pol_sar", sigma0, stats)
    expected = (np.log10(sigma0 + 1e-6) - lo) / (hi - lo)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out[0, 0, 0] == pytest.approx(0.0, abs=1e-7)  # log10(1e-6) = -6 = the minimum
    dem = np.array([[[np.nan, 10.0]]])
    out = normalise_group("dem", dem, stats)
    assert np.isnan(out[0, 0, 0]) and np.isfinite(out[0, 0, 1])
    thermal = normalise(
        {"thermal": np.full((1, 1, 1), 322.08056640625)}, stats
    )  # the published maximum maps to 1
    assert thermal["thermal"][0, 0, 0] == pytest.approx(1.0)


def test_normalise_rejects_wrong_band_count() -> None:
    with pytest.raises(InputError, match="6 bands"):
        normalise_group("optical", np.zeros((4, 4, 5)))


def test_valid_mask() -> None:
    x = np.ones((3, 4, 6), np.float32)
    x[0, 0, 2] = np.nan
    x[1, 1, :] = np.inf
    mask = valid_mask(x)
    assert mask.dtype == bool and mask.shape == (3, 4)
    assert mask.sum() == 10 and not mask[0, 0] and not mask[1, 1]


def test_stack_layout_from_descriptions_and_require() -> None:
    desc = GROUP_STACK_BANDS["optical"] + GROUP_STACK_BANDS["dem"] + ("in_sar:1", None)
    layout = StackLayout.from_descriptions(desc, name="stack.tif")
    assert layout.groups == ("optical", "dem")  # in_sar is incomplete
    assert layout.indexes("dem") == (7, 8)
    layout.require(["optical", "dem"])
    with pytest.raises(InputError) as err:
        layout.require(["optical", "dem", "in_sar"])
    assert str(err.value) == (
        "stack.tif has optical, dem; the model needs optical, dem, in_sar; "
        "rebuild the stack with glaviz features --in-sar …"
    )
    # Band order in the file does not matter, descriptions do.
    shuffled = StackLayout.from_descriptions(("slope", *GROUP_STACK_BANDS["optical"], "elevation"))
    assert shuffled.indexes("dem") == (8, 1) and shuffled.indexes("optical") == (2, 3, 4, 5, 6, 7)
    with pytest.raises(InputError, match="no glaviz feature bands"):
        StackLayout.from_descriptions((None, None)).require(["optical"])


def test_stack_layout_reads_a_written_stack(tmp_path: Path) -> None:
    transform = from_origin(500_000, 6_000_000, 20, 20)
    rng = np.random.default_rng(3)
    optical = rng.uniform(0, 1, (6, 40, 50)).astype(np.float32)
    optical[:, 3, 4] = np.nan
    dem = rng.uniform(1000, 2000, (1, 40, 50)).astype(np.float32)
    paths = {}
    for name, data in (("optical", optical), ("elevation", dem)):
        paths[name] = tmp_path / f"{name}.tif"
        with rasterio.open(
            paths[name], "w", driver="GTiff", width=50, height=40, count=data.shape[0],
            dtype="float32", crs="EPSG:32633", transform=transform,
        ) as dst:  # fmt: skip
            dst.write(data)
    result = compile_stack(output=tmp_path / "stack.tif", **paths)
    layout = StackLayout.read(result.path)
    assert layout.name == "stack.tif" and layout.groups == ("optical", "dem")
    with rasterio.open(result.path) as ds:
        assert StackLayout.read(ds).bands == layout.bands
        window = rasterio.windows.Window(0, 0, 10, 8)
        groups = layout.read_groups(ds, ["dem", "optical"], window=window)
    assert groups["optical"].shape == (8, 10, 6) and groups["dem"].shape == (8, 10, 2)
    np.testing.assert_array_equal(groups["optical"], np.moveaxis(optical[:, :8, :10], 0, -1))
    np.testing.assert_array_equal(groups["dem"][..., 0], dem[0, :8, :10])
    assert not valid_mask(groups["optical"])[3, 4]
    with pytest.raises(InputError, match="cannot read stack"):
        StackLayout.read(tmp_path / "missing.tif")


def test_pipeline_module_is_numpy_only() -> None:
    code = (
        "import sys\n"
        "import glaviz.published.normalisation\n"
        "print([m for m in ('rasterio', 'tensorflow', 'keras') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reference_scene_matches_published_features(reference_dir: Path, tmp_path: Path) -> None:
    """Done-when check of issue 3: stack + pipeline = the published compile_features.py."""
    scene = reference_dir / "scene"
    expected = np.load(reference_dir / "expected" / "features_global.npz")
    result = compile_stack(
        output=tmp_path / "stack.tif",
        optical=scene / "optical.tif",
        elevation=scene / "elevation.tif",
        slope=scene / "slope.tif",
    )
    with rasterio.open(result.path) as ds:
        layout = StackLayout.read(ds)
        groups = layout.read_groups(ds, ["optical", "dem"])
    stats = NormalisationStats.published()
    for group in ("optical", "dem"):
        ours = normalise_group(group, groups[group], stats)
        assert ours.shape == expected[group].shape
        assert np.abs(ours - expected[group]).max() <= 1e-5, group
