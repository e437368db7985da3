"""The uncalibrated confidence: ``1 −`` the Shannon entropy of the softmax, as published.

Calibration fits a curve to this value and deploy writes it, so it lives here, below both:
:mod:`glaviz.engine.postprocess` takes it from this module (the engine depends on calibration,
never the other way round).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

#: Probabilities are clipped to [CLIP_EPS, 1 − CLIP_EPS] before the entropy, as published.
CLIP_EPS = 1e-6


def confidence(probs: np.ndarray, *, dtype: DTypeLike = np.float32) -> np.ndarray:
    """``1 −`` base-2 Shannon entropy of ``probs`` (last axis = classes), clipped as published.

    The base is fixed at 2, *not* ``n_classes``: for the two-class model this is the normalised
    entropy, for more classes the confidence can go below zero, as published. Computed in
    float64 whatever the input, as the published code did on its float64 blend; ask for
    ``dtype=np.float64`` when a calibration follows, to calibrate the unrounded values.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), CLIP_EPS, 1 - CLIP_EPS)
    # The published -sum(p * log(p) / log(2)), in place (deploy runs this on every pixel); for
    # two classes the sum is written out, which numpy's reduction over a length-2 axis equals.
    terms = np.log(p)
    terms *= p
    terms /= np.log(2.0)
    two = terms.shape[-1] == 2
    total = terms[..., 0] + terms[..., 1] if two else np.sum(terms, axis=-1)
    return (1.0 + total).astype(dtype, copy=False)  # 1 - (-total), exactly
