"""Pixel counts and the scores derived from them, as the published ``evaluate.py`` defines them.

The published evaluation sums true/false positives/negatives over every pixel of a tile, then over
tiles (per region, per subregion, in total), and only then computes the scores. Scores are *not*
averaged over tiles: a region's IoU is the IoU of all its pixels together. glaviz keeps that.

Glacier is class 1. A pixel takes part only where both the prediction and the truth are 0 or 1;
anything else (255 = nodata in ``outlines.tif``, padding) is left out, which is also what the
published counts did (their four conditions test for exactly 0 and 1).

Undefined scores are ``None`` (JSON ``null``), never a made-up number:

- IoU = tp / (tp + fp + fn) and F1 = 2 tp / (2 tp + fp + fn) are undefined when neither the truth
  nor the prediction has any glacier pixel (a perfect "nothing here" would read as IoU 1.0 and
  lift every average it enters; a 0.0 would punish it — both would be inventions);
- precision = tp / (tp + fp) is undefined without predicted glacier;
- recall = tp / (tp + fn) is undefined without true glacier;
- accuracy = (tp + tn) / all is undefined only when no pixel was counted.

F1 is written as ``2 tp / (2 tp + fp + fn)``, which equals the published ``2 P R / (P + R)``
wherever that is defined, and stays defined (0.0) when one of P or R is 0/0 but the other is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SCORE_NAMES", "Areas", "Counts", "Evaluation"]

#: Score keys, in the order of the JSON and the table.
SCORE_NAMES = ("iou", "precision", "recall", "f1", "accuracy")


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Counts:
    """Confusion counts of glacier (1) against background (0) pixels; addable."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def from_arrays(
        cls, pred: np.ndarray, true: np.ndarray, valid: np.ndarray | None = None
    ) -> Counts:
        """Count pixels where ``pred`` and ``true`` are both 0 or 1 (and ``valid``, if given).

        One ``bincount`` over ``2·pred + true`` instead of four masks: one pass over the pixels.
        """
        pred = np.asarray(pred)
        true = np.asarray(true)
        if pred.shape != true.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from truth shape {true.shape}")
        keep = ((pred == 0) | (pred == 1)) & ((true == 0) | (true == 1))
        if valid is not None:
            keep &= valid
        code = 2 * pred[keep].astype(np.int64) + true[keep].astype(np.int64)
        tn, fn, fp, tp = (int(n) for n in np.bincount(code, minlength=4))
        return cls(tp=tp, fp=fp, fn=fn, tn=tn)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            tp=self.tp + other.tp,
            fp=self.fp + other.fp,
            fn=self.fn + other.fn,
            tn=self.tn + other.tn,
        )

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.tp + self.tn, self.total)

    def to_dict(self) -> dict[str, Any]:
        """The JSON block of ``glaviz evaluate`` (docs/evaluation.md): the five scores (``None``
        when undefined), then counts."""
        scores: dict[str, Any] = {name: getattr(self, name) for name in SCORE_NAMES}
        return {**scores, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


@dataclass(frozen=True)
class Areas:
    """Glacier area of prediction and truth over the evaluated pixels, in km²."""

    prediction_km2: float
    truth_km2: float

    @property
    def difference_km2(self) -> float:
        """Prediction minus truth: positive when the map has more glacier than the reference."""
        return self.prediction_km2 - self.truth_km2

    def to_dict(self) -> dict[str, float]:
        return {
            "prediction_km2": self.prediction_km2,
            "truth_km2": self.truth_km2,
            "difference_km2": self.difference_km2,
        }


@dataclass
class Evaluation:
    """Counts in total, per region and per subregion; areas for the raster/vector mode."""

    total: Counts = field(default_factory=Counts)
    regions: dict[str, Counts] = field(default_factory=dict)
    subregions: dict[str, Counts] = field(default_factory=dict)
    areas: Areas | None = None
    tiles: int = 0
    excluded_pixels: int = 0
    #: The JSON file the scores were written to, if any (``glaviz evaluate --scores FILE``).
    output: Path | None = None

    def add(
        self, counts: Counts, *, region: str | None = None, subregion: str | None = None
    ) -> None:
        """Add one tile's (or window's) counts to the total and to its region and subregion."""
        self.total = self.total + counts
        if region is not None:
            self.regions[region] = self.regions.get(region, Counts()) + counts
        if subregion is not None:
            self.subregions[subregion] = self.subregions.get(subregion, Counts()) + counts

    def to_dict(self) -> dict[str, Any]:
        """The scores JSON of evaluate, names sorted; raster mode adds ``areas`` and ``pixels``."""
        data: dict[str, Any] = {
            "total": self.total.to_dict(),
            "regions": {name: self.regions[name].to_dict() for name in sorted(self.regions)},
            "subregions": {
                name: self.subregions[name].to_dict() for name in sorted(self.subregions)
            },
        }
        if self.areas is not None:
            data["areas"] = self.areas.to_dict()
            data["pixels"] = {"evaluated": self.total.total, "excluded": self.excluded_pixels}
        return data

    def summary(self) -> str:
        """The total scores on one line (the command prints the full table instead)."""
        total = self.total
        scores = ", ".join(
            f"{label} {'–' if value is None else f'{value:.4f}'}"
            for label, value in (
                ("IoU", total.iou),
                ("precision", total.precision),
                ("recall", total.recall),
                ("F1", total.f1),
                ("accuracy", total.accuracy),
            )
        )
        return f"{scores} over {total.total:,} pixels"

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz evaluate``, less the ``status`` the CLI adds."""
        outputs = [] if self.output is None else [str(self.output)]
        return {"outputs": outputs, "scores": self.to_dict()}
