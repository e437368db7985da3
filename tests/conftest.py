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
