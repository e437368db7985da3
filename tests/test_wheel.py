"""The built wheel carries the package data: registry, calibrations, statistics, demo model."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # No build isolation (tests never touch the network), so the installed setuptools builds.
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(
            f"building needs setuptools>=77 (PEP 639 license), found {setuptools.__version__}"
        )
    # Build from a copy of the tracked sources so the checkout stays clean (no build/ folder).
    src = tmp_path_factory.mktemp("src")
    for name in ("glaviz", "pyproject.toml", "README.md", "LICENSE"):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(out),
    ]
    proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (built,) = out.glob("glaviz-*.whl")
    return built


def test_wheel_holds_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "glaviz/__init__.py",
        "glaviz/engine/deploy.py",
        "glaviz/data/registry.toml",
        "glaviz/data/normalization.json",
        "glaviz/data/models/demo.glaviz",
    ):
        assert required in names, required
    calibrations = {Path(n).name for n in names if n.startswith("glaviz/data/calibration/")}
    packaged = {p.name for p in (ROOT / "glaviz" / "data" / "calibration").glob("*.json")}
    assert packaged and calibrations == packaged
    assert not [n for n in names if n.startswith(("src/", "tests/"))]
