"""``acquire.json``: the run record of an acquisition, with the provenance the data needs.

Besides what every run record holds (the configuration, a valid ``--config``, and the
fingerprint that ``--skip-existing`` compares), it says where every pixel came from: the STAC
item ids and hrefs of each granule, its date, processing baseline and the offset and
quantification applied to it, the radiometry (TOA or BOA), cloud and coverage inside the AOI,
the DEM tiles, and the licences and attributions the Copernicus data come with. No credential
is ever written here: hrefs are the catalogue's public ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from glaviz.acquire.composite import GranuleFiles
from glaviz.acquire.granule import OPTICAL_BANDS, DemTile
from glaviz.acquire.grid import Grid
from glaviz.acquire.outputs import Tally
from glaviz.acquire.select import Candidate

#: The terms of the data a run uses, and the attribution each requires in products made from it.
SENTINEL2_LICENCE = {
    "data": "Copernicus Sentinel-2",
    "licence": "Legal notice on the use of Copernicus Sentinel Data and Service Information "
    "(free, full and open access)",
    "url": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
}
DEM_LICENCE = {
    "data": "Copernicus DEM (GLO-30, GLO-90)",
    "licence": "Licence for the Copernicus DEM GLO-30 and GLO-90 (free of charge, worldwide, "
    "for any lawful use)",
    "url": "https://spacedata.copernicus.eu/documents/20126/0/CSCDA_ESA_Mission-specific+Annex.pdf",
    "attribution": "© DLR e.V. 2010-2014 and © Airbus Defence and Space GmbH 2014-2018 provided "
    "under COPERNICUS by the European Union and ESA; all rights reserved",
}


def sentinel2_attribution(years: Sequence[int]) -> str:
    """The attribution Copernicus asks of products made from Sentinel-2 data of ``years``."""
    span = "-".join(str(y) for y in sorted({min(years), max(years)})) if years else ""
    return f"Contains modified Copernicus Sentinel data {span}".strip()


def granule_record(files: GranuleFiles) -> dict[str, Any]:
    """One granule: identity, hrefs, and the radiometric constants applied to each band."""
    granule, radiometry = files.granule, files.radiometry
    return {
        "item_id": granule.item_id,
        "collection": granule.collection,
        "tile": granule.tile,
        "sensed": granule.sensed.isoformat(),
        "platform": granule.platform,
        "processing_baseline": radiometry.baseline or granule.baseline,
        "scene_cloud_pct": granule.scene_cloud_pct,
        "quantification_value": radiometry.quantification,
        "offsets_applied": {b: radiometry.offset(b) for b in OPTICAL_BANDS},
        "hrefs": dict(granule.bands),
        "metadata": granule.metadata,
        "cloud_mask": granule.cloud_mask,
    }


def provenance(
    *,
    grid: Grid,
    radiometry: str,
    composite: str,
    ranked: Sequence[Candidate],
    chosen: Sequence[Candidate],
    files: Sequence[GranuleFiles],
    dem: Sequence[DemTile],
    tally: Tally,
    dem_coverage: float,
) -> dict[str, Any]:
    """The acquisition part of ``acquire.json`` (the caller adds the run record's own keys)."""
    by_item = {f.granule.item_id: f for f in files}
    years = [c.day.year for c in chosen]
    return {
        "radiometry": radiometry,
        "composite": composite,
        "grid": {
            "crs": grid.crs,
            "resolution_m": grid.resolution,
            "bounds": list(grid.bounds),
            "width": grid.width,
            "height": grid.height,
        },
        "scenes": [
            {
                **c.to_json(),
                "granules": [granule_record(by_item[g.item_id]) for g in c.granules],
            }
            for c in chosen
        ],
        "candidates": [c.to_json() for c in ranked],
        "result": {
            "coverage": round(tally.coverage, 4),
            "cloud_in_aoi": round(tally.cloud_fraction, 4),
            "dem_coverage": round(dem_coverage, 4),
        },
        "dem": [{"item_id": t.item_id, "product": t.product, "href": t.href} for t in dem],
        "licences": [SENTINEL2_LICENCE, DEM_LICENCE],
        "attributions": [sentinel2_attribution(years), DEM_LICENCE["attribution"]],
    }
