"""End to end: ``glaviz batch`` maps one region at two dates with the demo model, then
``glaviz change`` compares the batch's output root.

The second date is the first scene with its lower rows turned into bare rock (the reflectance
of the scene's own ice-free ground) and a cloud (NaN reflectance) over its top rows, so the
model sees a retreat and deploy writes nodata under the cloud. Whatever the model maps, the
change outputs must agree pixel for pixel with the two outline rasters it wrote.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from glaviz.batch import run_batch
from glaviz.cli.app import main

SIZE = (96, 96)
CLOUD_ROWS = slice(0, 12)
ROCK_ROWS = slice(60, 96)


def second_date(first: Path, folder: Path) -> Path:
    """A copy of ``first`` whose lower rows are bare rock and top rows are under a cloud."""
    folder.mkdir()
    shutil.copy(first / "elevation.tif", folder / "elevation.tif")
    with rasterio.open(first / "optical.tif") as src:
        optical = src.read()
        profile = src.profile
    with rasterio.open(first / "truth.tif") as src:
        truth = src.read(1)
    rock = np.nanmedian(optical[:, truth == 0], axis=1)
    optical[:, ROCK_ROWS, :] = rock[:, None, None]
    optical[:, CLOUD_ROWS, :] = np.nan
    with rasterio.open(folder / "optical.tif", "w", **profile) as dst:
        dst.write(optical)
    return folder


def test_batch_over_two_dates_then_change_on_its_root(tmp_path: Path, capsys) -> None:
    from glaviz.samples import make_scene

    first = make_scene(tmp_path / "raw" / "a", size=SIZE, seed=3, region="ALP").directory
    later = second_date(first, tmp_path / "raw" / "b")
    job = tmp_path / "job.toml"
    lines = ['output = "out"', "", "[deploy]", 'weights = "demo"', ""]
    for sid, date, raw in (("alps-2017", "2017-08-15", first), ("alps-2023", "2023-08-20", later)):
        lines += ["[[scene]]", f'id = "{sid}"', f"date = {date}"]
        lines += [
            f'optical = "{raw / "optical.tif"}"',
            f'elevation = "{raw / "elevation.tif"}"',
            "",
        ]
    job.write_text("\n".join(lines))
    result = run_batch(job, shard=(0, 1))
    assert result.ok
    out = tmp_path / "out"

    change = tmp_path / "change"
    assert main(["change", str(out), "-o", str(change)]) == 0
    capsys.readouterr()
    for name in ("change.gpkg", "change.csv", "change.tif", "change.png", "run.json"):
        assert (change / name).is_file(), name

    with rasterio.open(out / "alps-2017" / "outlines.tif") as src:
        a = src.read(1)
    with rasterio.open(out / "alps-2023" / "outlines.tif") as src:
        b = src.read(1)
    with rasterio.open(change / "change.tif") as src:
        codes = src.read(1)
        assert src.descriptions == ("2017-08-15/2023-08-20",)
    valid = (a != 255) & (b != 255)
    assert (b[CLOUD_ROWS] == 255).all()  # deploy's nodata under the cloud
    expected = np.full(a.shape, 255, np.uint8)
    expected[valid] = 0
    expected[valid & (a == 1) & (b == 1)] = 1
    expected[valid & (a == 1) & (b == 0)] = 2
    expected[valid & (a == 0) & (b == 1)] = 3
    np.testing.assert_array_equal(codes, expected)

    with open(change / "change.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    (total,) = [r for r in rows if r["level"] == "total"]
    glaciers = [r for r in rows if r["level"] == "glacier"]
    assert glaciers and total["date_t0"] == "2017-08-15" and total["date_t1"] == "2023-08-20"
    pixel_km2 = 10 * 10 / 1e6
    lost, gained = int((codes == 2).sum()), int((codes == 3).sum())
    assert float(total["change_km2"]) == pytest.approx((gained - lost) * pixel_km2, rel=2e-3)
    # ice under the cloud at the first date is unobserved, never loss
    under_cloud = int(((a == 1) & ~valid).sum())
    assert float(total["unobserved_km2"]) == pytest.approx(under_cloud * pixel_km2, rel=2e-3)
    assert under_cloud > 0 and lost > 0
