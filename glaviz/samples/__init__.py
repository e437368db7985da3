"""Seeded synthetic data for tests, docs and the demo model: scenes and benchmark files.

:mod:`.scene` writes the raster inputs of ``glaviz features`` with a reference mask;
:mod:`.benchmark` writes HDF5 files in the published benchmark layout. ``python -m glaviz.samples``
writes either from the command line (``make demo`` uses it).
"""

from glaviz.samples.benchmark import make_benchmark, make_benchmark_splits, padded_size
from glaviz.samples.scene import (
    REGION_STYLES,
    SPECTRA,
    SceneArrays,
    SceneFiles,
    make_scene,
    synthesize_scene,
)

__all__ = [
    "REGION_STYLES",
    "SPECTRA",
    "SceneArrays",
    "SceneFiles",
    "make_benchmark",
    "make_benchmark_splits",
    "make_scene",
    "padded_size",
    "synthesize_scene",
]
