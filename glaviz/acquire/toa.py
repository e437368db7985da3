"""Digital numbers to reflectance: ``(DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE``.

DN 0 is Sentinel-2's no-data value (outside the swath, or a band not imaged); it becomes NaN,
never the reflectance ``-0.1`` that the formula would give it from baseline 04.00 on.
"""

from __future__ import annotations

import numpy as np

from glaviz.acquire.metadata import Radiometry

#: The DN that marks no data in every Sentinel-2 band.
NODATA_DN = 0


def to_reflectance(dn: np.ndarray, *, quantification: float, offset: float) -> np.ndarray:
    """Reflectance (float32, NaN where ``dn`` is 0 or NaN) of an array of DNs."""
    values = np.asarray(dn, dtype=np.float64)
    out = ((values + offset) / quantification).astype(np.float32)
    out[(values == NODATA_DN) | np.isnan(values)] = np.nan
    return out


def band_reflectance(dn: np.ndarray, radiometry: Radiometry, band: str) -> np.ndarray:
    """:func:`to_reflectance` with the constants ``radiometry`` holds for ``band``."""
    return to_reflectance(
        dn, quantification=radiometry.quantification, offset=radiometry.offset(band)
    )
