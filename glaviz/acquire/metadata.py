"""The radiometric constants of a Sentinel-2 product, read from its metadata XML.

A Level-1C band holds digital numbers (DN). Top-of-atmosphere reflectance is
``(DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE``. Both constants are in the product metadata
(``MTD_MSIL1C.xml``): the quantification value has always been 10000, and the per-band offset
appeared with processing baseline 04.00 (January 2022) at -1000, to keep dark pixels from being
clipped at zero. Products of older baselines have no offset list; their offset is 0. Reading the
constants from each product, instead of assuming them, is what makes a 2021 and a 2023 scene
give the same reflectance. Level-2A products name the same constants ``BOA_QUANTIFICATION_VALUE``
and ``BOA_ADD_OFFSET``.

The XML is parsed by local element names: the namespaces differ between product versions and
between L1C and L2A, the element names do not.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from glaviz.errors import InputError

#: Band order of ``band_id`` in the metadata's offset lists (0 = B01 … 12 = B12).
BAND_IDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"
)  # fmt: skip

#: The processing baseline from which products carry a radiometric offset.
OFFSET_BASELINE = (4, 0)


@dataclass(frozen=True)
class Radiometry:
    """How one product's DNs become reflectance: ``(DN + offsets[band]) / quantification``."""

    baseline: str | None
    quantification: float
    offsets: Mapping[str, float]
    #: "TOA" for Level-1C, "BOA" (surface reflectance) for Level-2A.
    kind: str

    def offset(self, band: str) -> float:
        """The offset of ``band`` (0 when the product lists none for it)."""
        return float(self.offsets.get(band, 0.0))


def baseline_tuple(baseline: str | None) -> tuple[int, int] | None:
    """``"04.00"`` → (4, 0); None or unreadable → None."""
    if not baseline:
        return None
    major, _, minor = baseline.strip().partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return None


def has_offset(baseline: str | None) -> bool:
    """Whether a product of ``baseline`` carries the -1000 offset (04.00 and later)."""
    parsed = baseline_tuple(baseline)
    return parsed is not None and parsed >= OFFSET_BASELINE


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_radiometry(text: str | bytes, *, source: str, baseline: str | None = None) -> Radiometry:
    """The :class:`Radiometry` of a product metadata document (``MTD_MSIL1C.xml`` or
    ``MTD_MSIL2A.xml``). ``baseline`` is the catalogue's value, used when the XML has none.

    A product of baseline 04.00 or later whose XML lists no offsets is refused: guessing would
    shift every reflectance by 0.1.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"product metadata {source} is not readable XML ({exc})") from None
    kind = "BOA" if "Level-2A" in _local(root.tag) else "TOA"
    quantification: float | None = None
    offsets: dict[str, float] = {}
    for element in root.iter():
        name, value = _local(element.tag), (element.text or "").strip()
        if name == "PROCESSING_BASELINE" and value:
            baseline = value
        elif name in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and value:
            quantification = float(value)
        elif name in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
            band_id = int(element.get("band_id", "-1"))
            if 0 <= band_id < len(BAND_IDS):
                offsets[BAND_IDS[band_id]] = float(value)
    if quantification is None or quantification <= 0:
        raise InputError(
            f"product metadata {source} has no QUANTIFICATION_VALUE; it is not a Sentinel-2 "
            "L1C/L2A product metadata file (MTD_MSIL1C.xml)"
        )
    if not offsets and has_offset(baseline):
        raise InputError(
            f"product metadata {source} is of processing baseline {baseline} but lists no "
            "RADIO_ADD_OFFSET; it cannot be converted to reflectance without guessing the offset"
        )
    return Radiometry(baseline=baseline, quantification=quantification, offsets=offsets, kind=kind)


def read_radiometry(path: Path, *, baseline: str | None = None) -> Radiometry:
    """:func:`parse_radiometry` of a local metadata file."""
    return parse_radiometry(Path(path).read_bytes(), source=str(path), baseline=baseline)
