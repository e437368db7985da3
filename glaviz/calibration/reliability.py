"""Reliability diagrams and the expected calibration error (ECE), accumulated in a stream.

A reliability diagram sorts pixels into ``N`` equal bins of confidence on [0, 1] and compares each
bin's mean confidence with its accuracy (the share of its pixels that are classified correctly).
Only three numbers per bin are needed — pixel count, sum of confidences, number correct — so a
whole validation split is summarised by adding tiles one after another, never holding its pixels.

Bins follow ``numpy.histogram`` on ``linspace(0, 1, N + 1)``: ``[e_i, e_{i+1})``, the last one
closed ``[e_{N-1}, 1]``. (The published calibration models have 100 fit points between their two
anchors, one per 0.01 bin, e.g. a first point at mean confidence 0.0034 — 100 equal bins on
[0, 1]. Which side of an edge is closed only matters for confidences that fall exactly on one.)

ECE = Σ_b (n_b / n) · |accuracy_b − mean confidence_b| over non-empty bins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glaviz.calibration.confidence import confidence as entropy_confidence
from glaviz.errors import ConfigError

__all__ = [
    "ECE_BINS",
    "Reliability",
    "bin_index",
    "correct_and_confidence",
]

#: Bins of the reported ECE, whatever ``--bins`` the diagram and fit use (issue 7).
ECE_BINS = 100


def bin_edges(bins: int) -> np.ndarray:
    """The ``bins + 1`` equal edges on [0, 1], as ``numpy.histogram`` makes them."""
    return np.linspace(0.0, 1.0, bins + 1)


def bin_index(conf: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each confidence: ``[e_i, e_{i+1})``, 1.0 in the last bin, as ``numpy.histogram``.

    Values are clipped to [0, 1] first (a base-2 confidence of two classes never leaves it;
    a calibration curve is clipped by ``apply``).
    """
    c = np.clip(np.asarray(conf, dtype=np.float64), 0.0, 1.0)
    index = np.searchsorted(bin_edges(bins), c, side="right") - 1
    return np.minimum(index, bins - 1)


def correct_and_confidence(prob: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat confidence (float64) and correctness of the pixels with a 0/1 truth and finite probs.

    Confidence is ``1 −`` base-2 entropy of the probabilities clipped to [1e-6, 1 − 1e-6] (the
    deploy engine's :func:`~glaviz.engine.postprocess.confidence`); a pixel is correct when
    (probability of glacier > 0.5) equals the truth, as the published notebook decides it.
    """
    prob = np.asarray(prob)
    true = np.asarray(true)
    keep = ((true == 0) | (true == 1)) & np.all(np.isfinite(prob), axis=-1)
    p = prob[keep]
    conf = entropy_confidence(p, dtype=np.float64)
    correct = (p[:, 1] > 0.5) == (true[keep] == 1)
    return conf, correct


@dataclass
class Reliability:
    """Per-bin pixel count, confidence sum and number correct over ``bins`` equal bins."""

    bins: int
    count: np.ndarray = field(default=None)  # type: ignore[assignment]
    conf_sum: np.ndarray = field(default=None)  # type: ignore[assignment]
    correct: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if isinstance(self.bins, bool) or not isinstance(self.bins, int | np.integer):
            raise ConfigError(f"bins must be an integer, got {self.bins!r}")
        if self.bins < 2:
            raise ConfigError(
                f"bins must be at least 2 for a reliability diagram, got {self.bins}; "
                "use e.g. --bins 100 (the published setting)"
            )
        self.bins = int(self.bins)
        if self.count is None:
            self.count = np.zeros(self.bins, dtype=np.int64)
        if self.conf_sum is None:
            self.conf_sum = np.zeros(self.bins, dtype=np.float64)
        if self.correct is None:
            self.correct = np.zeros(self.bins, dtype=np.int64)

    def update(self, conf: np.ndarray, correct: np.ndarray) -> None:
        """Add pixels: their confidences and whether each was classified correctly."""
        conf = np.asarray(conf, dtype=np.float64).ravel()
        correct = np.asarray(correct, dtype=bool).ravel()
        index = bin_index(conf, self.bins)
        self.count += np.bincount(index, minlength=self.bins)
        self.conf_sum += np.bincount(index, weights=conf, minlength=self.bins)
        self.correct += np.bincount(index, weights=correct, minlength=self.bins).astype(np.int64)

    @property
    def edges(self) -> np.ndarray:
        return bin_edges(self.bins)

    @property
    def total(self) -> int:
        return int(self.count.sum())

    @property
    def nonempty(self) -> np.ndarray:
        return self.count > 0

    @property
    def mean_confidence(self) -> np.ndarray:
        """Mean confidence per bin; NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.nonempty, self.conf_sum / self.count, np.nan)

    @property
    def accuracy(self) -> np.ndarray:
        """Share of correct pixels per bin; NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.nonempty, self.correct / self.count, np.nan)

    def ece(self) -> float:
        """Expected calibration error: count-weighted mean |accuracy − confidence| over bins."""
        total = self.total
        if total == 0:
            return float("nan")
        keep = self.nonempty
        gap = np.abs(self.correct[keep] / self.count[keep] - self.conf_sum[keep] / self.count[keep])
        return float(np.sum(self.count[keep] * gap) / total)

    def to_dict(self) -> dict[str, list[float] | list[int] | int]:
        """Plain numbers for JSON: edges and, per bin, count, mean confidence and accuracy."""
        return {
            "bins": self.bins,
            "count": self.count.tolist(),
            "mean_confidence": [None if np.isnan(v) else float(v) for v in self.mean_confidence],
            "accuracy": [None if np.isnan(v) else float(v) for v in self.accuracy],
        }  # type: ignore[dict-item]
