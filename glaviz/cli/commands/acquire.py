"""``glaviz acquire``: from a region and a season to a deploy-ready folder."""

from __future__ import annotations

from typing import Any

from glaviz import api
from glaviz.cli.from_config import config_command, run_engine
from glaviz.config import AcquireConfig


@config_command("acquire", AcquireConfig, options={"output": ["--output", "-o"]})
def acquire(config: AcquireConfig) -> dict[str, Any]:
    """Sentinel-2 top-of-atmosphere reflectance and Copernicus DEM elevation for a region.

    Searches a public STAC catalogue, ranks the dates by the cloud inside the AOI (from each
    product's own cloud mask), and writes into the output folder: optical.tif (B02, B03, B04,
    B08, B11, B12 as (DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE on a 10 m UTM grid, NaN
    outside the data or under cloud), elevation.tif, stack.tif (ready for glaviz deploy),
    quicklook.png and acquire.json (items, baselines, offsets, cloud, licences). Downloaded
    files are cached under the glaviz cache folder, so re-runs read nothing twice.
    --search-only lists the ranked dates and downloads no imagery.

    Example: glaviz acquire --bbox 7.95,46.48,8.10,46.58 --year 2023 -o aletsch/
    """
    return run_engine(api.acquire, config)
