"""Shared pytest fixtures: the reference folder beside the checkout and quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: ``../shared/reference`` relative to the repository root (CI places shared/ beside the clone).
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The published pipeline's reference outputs; tests that need them skip without them."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def reference_weights(reference_dir: Path) -> Path:
    return reference_dir / "weights" / "glavitu_global_weights.h5"


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weights cache of the test's own, and no way out to the network's real sources."""
    from tests.fake_servers import refused_url

    home = tmp_path / "home"
    monkeypatch.setenv("GLAVIZ_HOME", str(home))
    monkeypatch.delenv("GLAVIZ_WEIGHTS_URL", raising=False)
    monkeypatch.delenv("GLAVIZ_REGISTRY", raising=False)
    # Google Drive is unreachable unless a test serves it: no test may reach the real one.
    monkeypatch.setenv("GLAVIZ_DRIVE_URL", refused_url())
    # A proxy from the environment must not intercept the local mirror.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return home


@pytest.fixture(scope="session")
def published_checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A GlaViTU optical+dem checkpoint in the published Keras 2 format (~1.4 MB, seeded): what
    a mirror serves as ``glavitu_global_weights.h5`` in the download tests."""
    from tests.helpers import write_keras2_checkpoint

    path = tmp_path_factory.mktemp("weights") / "glavitu_global_weights.h5"
    return write_keras2_checkpoint(path, seed=3).read_bytes()
