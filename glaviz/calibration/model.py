"""Confidence calibration models stored as plain JSON numbers (never pickles).

Two forms, both mapping a raw confidence in [0, 1] to a calibrated one:

- **kernel ridge** — the published form. The paper's calibration models are scikit-learn
  ``KernelRidge`` fits with a laplacian kernel; ``reference/calibration/*.json`` writes them out as
  ``calibrated(c) = Σ_i dual_coef[i] · exp(−gamma · |c − x_fit[i]|)``. Keys: ``kernel``,
  ``gamma``, ``x_fit``, ``dual_coef``; optional ``method: "kernel_ridge"`` and a ``check`` table
  ``{"c": […], "calibrated_unclipped": […]}`` that is verified on load, so a damaged file fails
  loudly instead of silently miscalibrating a map.
- **isotonic** — glaviz's own form: ``{"method": "isotonic", "x": […], "y": […]}``, a monotone
  table (``x`` strictly increasing, ``y`` non-decreasing) interpolated linearly and held constant
  beyond its ends.

``predict`` returns the raw model output; ``apply`` clips it to [0, 1] as the published deploy
does. Both compute in float64 and return float64; NaN (nodata) stays NaN.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from glaviz.errors import InputError
from glaviz.runs.atomic import write_text_atomic

__all__ = ["CalibrationModel", "IsotonicCalibration", "KernelRidgeCalibration"]

#: Tolerance for a file's ``check`` table (it was written from the same numbers in float64).
CHECK_TOLERANCE = 1e-6


class CalibrationModel(ABC):
    """A calibration curve: load with :meth:`load` / :meth:`from_json`, then :meth:`apply`."""

    method: ClassVar[str]

    @abstractmethod
    def predict(self, conf: np.ndarray) -> np.ndarray:
        """The calibrated confidence before clipping (float64, same shape as ``conf``)."""

    def apply(self, conf: np.ndarray) -> np.ndarray:
        """The calibrated confidence clipped to [0, 1], as written to ``confidence.tif``."""
        return np.clip(self.predict(conf), 0.0, 1.0)

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, readable by :meth:`from_dict`."""

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON under a temporary name beside ``path`` and rename, so no half file."""
        write_text_atomic(path, self.to_json() + "\n")

    @staticmethod
    def from_dict(data: object, *, source: str = "calibration data") -> CalibrationModel:
        """Build the model a parsed JSON object describes (``method`` key, or kernel-ridge keys)."""
        if not isinstance(data, dict):
            raise InputError(
                f"{source} must be a JSON object, got {type(data).__name__}; expected e.g. "
                '{"kernel": "laplacian", "gamma": …, "x_fit": […], "dual_coef": […]}'
            )
        method = data.get("method", "kernel_ridge" if "dual_coef" in data else None)
        method = str(method).replace("-", "_") if method is not None else None
        if method == KernelRidgeCalibration.method:
            return KernelRidgeCalibration.from_dict(data, source=source)
        if method == IsotonicCalibration.method:
            return IsotonicCalibration.from_dict(data, source=source)
        raise InputError(
            f"{source} has unknown calibration method {data.get('method')!r}; expected "
            '"kernel_ridge" (keys kernel, gamma, x_fit, dual_coef) or "isotonic" (keys x, y)'
        )

    @staticmethod
    def from_json(text: str, *, source: str = "calibration JSON") -> CalibrationModel:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{source} is not valid JSON ({error}); glaviz reads calibration models only as "
                "JSON, e.g. the files of glaviz calibrate (published .pickle files are not read)"
            ) from error
        return CalibrationModel.from_dict(data, source=source)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> CalibrationModel:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise InputError(
                f"cannot read calibration file {path}: {error.strerror or error}; "
                "check the path given to --calibration"
            ) from error
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(
                f"calibration file {path} is not JSON text (binary data; a pickle?); glaviz reads "
                "only JSON calibration files such as those written by glaviz calibrate"
            ) from error
        return CalibrationModel.from_json(text, source=f"calibration file {path}")


@dataclass(frozen=True, eq=False)
class KernelRidgeCalibration(CalibrationModel):
    """The published scikit-learn ``KernelRidge`` (laplacian kernel) as numbers."""

    gamma: float
    x_fit: np.ndarray
    dual_coef: np.ndarray
    kernel: str = "laplacian"

    method: ClassVar[str] = "kernel_ridge"
    kernels: ClassVar[tuple[str, ...]] = ("laplacian",)

    def __post_init__(self) -> None:
        if self.kernel not in self.kernels:
            raise InputError(
                f"unknown calibration kernel {self.kernel!r}; glaviz evaluates "
                f"{', '.join(self.kernels)} (the kernel of the published models)"
            )
        if not (np.isfinite(self.gamma) and self.gamma > 0):
            raise InputError(f"calibration gamma must be a positive number, got {self.gamma!r}")
        if self.x_fit.shape != self.dual_coef.shape:
            raise InputError(
                f"calibration x_fit has {self.x_fit.size} values but dual_coef has "
                f"{self.dual_coef.size}; they must pair up one to one"
            )

    def predict(self, conf: np.ndarray) -> np.ndarray:
        # Σ_i d_i·exp(−γ|c − x_i|) splits at c into the fit points left and right of it; each side
        # is a decaying sum carried along the sorted points, so a pixel costs a binary search and
        # two exponentials instead of one per fit point (4× faster for the published 102 points,
        # no kernel matrix in memory). Exponents are clamped to ≤ 0 (only lanes that np.where
        # drops are clamped), so no gamma overflows; it equals the direct sum to ~1e-13.
        c = np.asarray(conf, dtype=np.float64)
        x, left, right = self._sweeps
        n_left = np.searchsorted(x, c, side="right")  # fit points ≤ c (NaN: all, stays NaN)
        last_left = np.maximum(n_left - 1, 0)
        first_right = np.minimum(n_left, x.size - 1)
        from_left = np.exp(-self.gamma * np.maximum(c - x[last_left], 0.0)) * left[last_left]
        from_right = np.exp(-self.gamma * np.maximum(x[first_right] - c, 0.0)) * right[first_right]
        return np.where(n_left > 0, from_left, 0.0) + np.where(n_left < x.size, from_right, 0.0)

    @cached_property
    def _sweeps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sorted fit points and, at each, the kernel sums of the points left / right of it."""
        order = np.argsort(self.x_fit, kind="stable")
        x, coef = self.x_fit[order], self.dual_coef[order]
        decay = np.exp(-self.gamma * np.diff(x))
        left, right = coef.copy(), coef.copy()
        for i in range(1, x.size):
            left[i] += decay[i - 1] * left[i - 1]
        for i in range(x.size - 2, -1, -1):
            right[i] += decay[i] * right[i + 1]
        return x, left, right

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kernel": self.kernel,
            "gamma": self.gamma,
            "x_fit": self.x_fit.tolist(),
            "dual_coef": self.dual_coef.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str) -> KernelRidgeCalibration:
        _require(data, ("kernel", "x_fit", "dual_coef"), source)
        model = cls(
            kernel=str(data["kernel"]),
            gamma=_number(data.get("gamma", 1.0), "gamma", source),
            x_fit=_vector(data["x_fit"], "x_fit", source),
            dual_coef=_vector(data["dual_coef"], "dual_coef", source),
        )
        _verify_check_table(model, data.get("check"), source)
        return model


@dataclass(frozen=True, eq=False)
class IsotonicCalibration(CalibrationModel):
    """A monotone table ``x → y``, linearly interpolated, constant beyond its ends."""

    x: np.ndarray
    y: np.ndarray

    method: ClassVar[str] = "isotonic"

    def __post_init__(self) -> None:
        if self.x.shape != self.y.shape:
            raise InputError(
                f"isotonic calibration has {self.x.size} x values but {self.y.size} y values; "
                "they must pair up one to one"
            )
        if np.any(np.diff(self.x) <= 0):
            raise InputError("isotonic calibration x values must be strictly increasing")
        if np.any(np.diff(self.y) < 0):
            raise InputError("isotonic calibration y values must be non-decreasing (monotone)")

    def predict(self, conf: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(conf, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str) -> IsotonicCalibration:
        _require(data, ("x", "y"), source)
        model = cls(x=_vector(data["x"], "x", source), y=_vector(data["y"], "y", source))
        _verify_check_table(model, data.get("check"), source)
        return model


def _require(data: dict[str, Any], keys: tuple[str, ...], source: str) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise InputError(
            f"{source} lacks {', '.join(missing)}; a calibration file needs {', '.join(keys)}"
        )


def _number(value: object, name: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{source}: {name} must be a number, got {value!r}")
    return float(value)


def _vector(value: object, name: str, source: str) -> np.ndarray:
    """A non-empty, finite, 1-D float64 array (a scikit-learn ``(n, 1)`` column is flattened)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{source}: {name} must be a list of numbers ({error})") from error
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise InputError(
            f"{source}: {name} must be a non-empty list of finite numbers, "
            f"got an array of shape {array.shape}"
        )
    return array


def _verify_check_table(model: CalibrationModel, check: object, source: str) -> None:
    if check is None:
        return
    if not isinstance(check, dict) or "c" not in check or "calibrated_unclipped" not in check:
        raise InputError(f'{source}: "check" must be {{"c": […], "calibrated_unclipped": […]}}')
    c = _vector(check["c"], "check.c", source)
    expected = _vector(check["calibrated_unclipped"], "check.calibrated_unclipped", source)
    if c.shape != expected.shape:
        raise InputError(f"{source}: check.c and check.calibrated_unclipped differ in length")
    error = float(np.max(np.abs(model.predict(c) - expected)))
    if error > CHECK_TOLERANCE:
        raise InputError(
            f"{source} fails its own check table (largest difference {error:.3g} > "
            f"{CHECK_TOLERANCE}); the file is damaged, re-create or re-download it"
        )
