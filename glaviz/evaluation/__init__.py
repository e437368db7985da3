"""Scoring glacier maps: predictions files of ``glaviz predict`` and deployed rasters.

``evaluate_predictions`` scores a predictions HDF5 file per region and subregion;
``evaluate_rasters`` scores an outlines raster against raster or vector reference outlines.
Both return an :class:`Evaluation` whose ``to_dict()`` is the JSON of ``glaviz evaluate``.
"""

from __future__ import annotations

from glaviz.evaluation.metrics import SCORE_NAMES, Areas, Counts, Evaluation
from glaviz.evaluation.predictions import evaluate_predictions
from glaviz.evaluation.rasters import PixelArea, evaluate_rasters

__all__ = [
    "SCORE_NAMES",
    "Areas",
    "Counts",
    "Evaluation",
    "PixelArea",
    "evaluate_predictions",
    "evaluate_rasters",
]
