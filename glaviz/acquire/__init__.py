"""``glaviz acquire``: from a region and a season to a deploy-ready folder.

The search side turns catalogue items into plain records (:mod:`~glaviz.acquire.granule`:
:class:`Granule`, :class:`DemTile`) in :mod:`~glaviz.acquire.search`, with the AOI
(:mod:`~glaviz.acquire.aoi`), the season (:mod:`~glaviz.acquire.season`) and the sources
(:mod:`~glaviz.acquire.sources`). From those records on, the engine (:mod:`~glaviz.acquire.run`)
ranks dates by the cloud inside the AOI (:mod:`~glaviz.acquire.clouds`,
:mod:`~glaviz.acquire.select`), fetches into the cache (:mod:`~glaviz.acquire.read`), converts
DNs with each product's own constants (:mod:`~glaviz.acquire.metadata`,
:mod:`~glaviz.acquire.toa`), composites on the output grid (:mod:`~glaviz.acquire.grid`,
:mod:`~glaviz.acquire.composite`, :mod:`~glaviz.acquire.dem`) and writes the folder
(:mod:`~glaviz.acquire.outputs`, :mod:`~glaviz.acquire.record`).

Only the plain records are imported here, so importing the package stays cheap. The package is
callable as the notebook function ``glaviz.acquire(config)``, which is :func:`glaviz.api.acquire`
(see :mod:`glaviz.util.modules` for why).
"""

from __future__ import annotations

from glaviz.acquire.granule import OPTICAL_BANDS, DemTile, Granule
from glaviz.util.modules import callable_package

__all__ = ["OPTICAL_BANDS", "DemTile", "Granule"]

callable_package(__name__, "glaviz.api:acquire")
