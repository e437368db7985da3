"""What a catalogue search hands to the reader: Sentinel-2 granules and DEM tiles.

The search side (:mod:`glaviz.acquire.search`) turns STAC items into these plain records, and
everything after it (cloud ranking, reading, compositing) sees only them. That keeps the STAC
vocabulary of each catalogue (asset keys, property names, href layouts) in one module, and lets the
reader be tested with granules that no catalogue ever listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

#: The six optical bands the published models read, in stack order (blue, green, red, NIR,
#: SWIR1, SWIR2). B11 and B12 are 20 m bands, brought to 10 m by the reader.
OPTICAL_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")

Level = Literal["l1c", "l2a"]
DemProduct = Literal["GLO-30", "GLO-90"]


@dataclass(frozen=True)
class Granule:
    """One Sentinel-2 tile on one date, with where to read each part of it.

    ``bands`` maps each name of :data:`OPTICAL_BANDS` to an href: an ``https://`` URL (read
    through GDAL's ``/vsicurl/``) or a local path. ``metadata`` is the product metadata XML that
    holds ``QUANTIFICATION_VALUE`` and the per-band ``RADIO_ADD_OFFSET`` (baseline 04.00 on);
    ``cloud_mask`` is ``MSK_CLASSI_B00.jp2`` from baseline 04.00 on and the vector
    ``MSK_CLOUDS_B00.gml`` before it (None when the source has neither).
    """

    item_id: str
    collection: str
    level: Level
    tile: str
    sensed: datetime
    platform: str
    baseline: str | None
    scene_cloud_pct: float | None
    footprint: Mapping[str, Any]
    epsg: int | None
    bands: Mapping[str, str]
    metadata: str | None = None
    cloud_mask: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)

    @property
    def day(self) -> date:
        """The acquisition date (UTC): granules of one day and orbit mosaic into one scene."""
        return self.sensed.date()


@dataclass(frozen=True)
class DemTile:
    """One Copernicus DEM tile (a COG of elevation in metres above the EGM2008 geoid)."""

    item_id: str
    href: str
    product: DemProduct
    footprint: Mapping[str, Any]
