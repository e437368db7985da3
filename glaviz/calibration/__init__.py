"""Confidence calibration: JSON calibration models (published kernel ridge, glaviz isotonic).

``CalibrationModel.load(path).apply(confidence)`` is all deploy needs; fitting lives with
``glaviz calibrate``.
"""

from __future__ import annotations

from glaviz.calibration.model import CalibrationModel, IsotonicCalibration, KernelRidgeCalibration

__all__ = ["CalibrationModel", "IsotonicCalibration", "KernelRidgeCalibration"]
