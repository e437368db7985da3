"""Catalogue searches: a region and a time window → Sentinel-2 :class:`Granule` and Copernicus DEM
:class:`DemTile` records. The STAC vocabulary of each catalogue (collections, property names,
asset keys, href layouts) stays in this module and :mod:`glaviz.acquire.sources`.

Searches go through pystac-client, which follows every ``next`` link, so a search returns all
pages. Each HTTP request is retried a bounded number of times by urllib3's ``Retry`` (the retry
machinery of ``requests``, which pystac-client exposes): connection errors, read timeouts and the
answers 429, 500, 502, 503 and 504, with exponential back-off. After that the search stops with one
:class:`DownloadError` naming the catalogue.

Where the L1C files are read from: Earth Search's L1C items point into a requester-pays S3 bucket
that needs an AWS account, so glaviz reads the same granules anonymously from Google Cloud's public
bucket, mapping each item to its SAFE folder there (:func:`safe_paths`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from glaviz.acquire import sources
from glaviz.acquire.aoi import Bbox, aoi_from_config, format_bbox
from glaviz.acquire.granule import OPTICAL_BANDS, DemProduct, DemTile, Granule, Level
from glaviz.acquire.season import describe_window, search_window
from glaviz.config.acquire import AcquireConfig, Source
from glaviz.errors import DownloadError, InputError, first_line

if TYPE_CHECKING:
    from pystac_client import Client

#: A STAC item as the catalogue sent it (GeoJSON Feature). Plain dicts, not pystac Items: an item
#: is read once, and pystac would try to resolve its links (relative ones fail).
Item = dict[str, Any]

#: Retries of one request after its first try, and the back-off base in seconds (waits of 0.5,
#: 1 and 2 s): a catalogue that is still down after about 4 s is reported, not waited for.
RETRIES = 3
BACKOFF_S = 0.5
#: (connect, read) timeouts of one request in seconds. Earth Search answers a search page in
#: well under a second; 30 s of silence means it is not going to answer.
TIMEOUT_S: tuple[float, float] = (10.0, 30.0)
#: Items per page asked for (Earth Search serves up to 100; fewer round trips than its 10).
PAGE_LIMIT = 100

#: Earth Search's asset keys (eo common names) for the bands the models read.
COMMON_NAMES: dict[str, str] = {
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B08": "nir",
    "B11": "swir16",
    "B12": "swir22",
}
_DEM_CELL = re.compile(r"_([NS])(\d{2})_00_([EW])(\d{3})_00_DEM$")
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")


@dataclass(frozen=True)
class SearchRequest:
    """One Sentinel-2 search: where, when (both days inclusive, UTC), how cloudy at most."""

    bbox: tuple[float, float, float, float]  # lon/lat W,S,E,N
    start: date
    end: date
    max_cloud_pct: float
    source: Source
    level: Level
    #: The ``--aoi`` polygons (GeoJSON, lon/lat) that the dates are ranked inside; None for a
    #: ``--bbox``, where the box is the area. The catalogue is searched with the box either way.
    polygon: dict[str, Any] | None = None

    @property
    def collection(self) -> str:
        """The STAC collection searched."""
        return sources.S2_COLLECTIONS[(self.source, self.level)]

    @property
    def datetime_range(self) -> str:
        """The STAC ``datetime`` interval: from the first day's start to the last day's end."""
        start = datetime.combine(self.start, time.min, tzinfo=UTC)
        end = datetime.combine(self.end, time(23, 59, 59), tzinfo=UTC)
        return f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/{end.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    def describe(self) -> str:
        """The search in words, for messages: collection, box, window, cloud limit."""
        return (
            f"{self.collection} ({self.source}) over --bbox {format_bbox(self.bbox)} from "
            f"{describe_window(self.start, self.end)} with scene cloud cover ≤ "
            f"{self.max_cloud_pct:g} %"
        )


def request_from_config(config: AcquireConfig) -> SearchRequest:
    """The search a run makes: the AOI's box (area limit checked) and the window, the default
    season chosen by the hemisphere of the AOI's centre."""
    aoi = aoi_from_config(config)
    start, end = search_window(
        year=config.year, season=config.season, dates=config.dates, centre_lat=aoi.centre[1]
    )
    return SearchRequest(
        bbox=aoi.bbox,
        start=start,
        end=end,
        max_cloud_pct=config.max_cloud,
        source=config.source,
        level=config.level,
        polygon=aoi.geometry if config.aoi is not None else None,
    )


# --- the catalogue ----------------------------------------------------------------------------


def open_catalogue(url: str) -> Client:
    """A pystac-client ``Client`` with bounded retries and timeouts on every request."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    retry = Retry(
        total=RETRIES,
        backoff_factor=BACKOFF_S,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # searches are POSTs, and safe to repeat
        raise_on_status=True,
    )
    io = StacApiIO(timeout=TIMEOUT_S, max_retries=retry)
    try:
        return Client.open(url, stac_io=io, timeout=TIMEOUT_S)
    except (APIError, ValueError) as exc:
        raise _unreachable(url, exc) from None


def _unreachable(url: str, exc: Exception) -> DownloadError:
    """The catalogue's failure as one error: a refusal (HTTP 4xx, or an answer that is not a
    STAC API) says to check the address; anything else happened after the retries."""
    reason = first_line(exc, 200)
    status = getattr(exc, "status_code", None)
    if (status is not None and 400 <= status < 500) or isinstance(exc, ValueError):
        answer = f"HTTP {status}" if status is not None else "something that is not a STAC API"
        return DownloadError(
            f"the STAC catalogue {url} answered {answer} ({reason}); check --stac-url/"
            f"${sources.STAC_URL_ENV}, or try again later if the catalogue is being changed"
        )
    return DownloadError(
        f"the STAC catalogue {url} did not answer after {RETRIES} retries ({reason}); try again "
        f"later, check the network, or point --stac-url/${sources.STAC_URL_ENV} at a mirror"
    )


def _search_items(
    client: Client, url: str, *, collection: str, bbox: Bbox, **params: Any
) -> list[Item]:
    """Every item of one search (all pages), with the catalogue's failures as one error."""
    from pystac_client.exceptions import APIError

    try:
        found = client.search(collections=[collection], bbox=list(bbox), limit=PAGE_LIMIT, **params)
        return list(found.items_as_dicts())
    except (APIError, ValueError) as exc:
        raise _unreachable(url, exc) from None


# --- Sentinel-2 -------------------------------------------------------------------------------


def search_granules(
    request: SearchRequest, *, stac_url: str | None = None, require_credentials: bool = True
) -> list[Granule]:
    """The granules of ``request``, scene cloud cover at most ``max_cloud_pct``, sorted by
    acquisition time then tile.

    Raises :class:`ConfigError` for missing CDSE credentials or a malformed
    ``$GLAVIZ_CDSE_S3_ENDPOINT`` (before any request; pass ``require_credentials=False`` for a
    search that downloads nothing), :class:`DownloadError`
    when the catalogue does not answer, :class:`InputError` when nothing matches.
    """
    if request.source == "cdse" and require_credentials:
        sources.cdse_credentials()
        sources.cdse_s3_endpoint()
    url = sources.stac_url(request.source, stac_url)
    client = open_catalogue(url)
    from pystac_client import ConformanceClasses

    params: dict[str, Any] = {"datetime": request.datetime_range}
    filtered = client.conforms_to(ConformanceClasses.QUERY)
    if filtered:  # the catalogue drops cloudier scenes itself; others are dropped below
        params["query"] = {"eo:cloud_cover": {"lte": request.max_cloud_pct}}
    items = _search_items(client, url, collection=request.collection, bbox=request.bbox, **params)
    clear = [i for i in items if _cloud_pct(i) is None or _cloud_pct(i) <= request.max_cloud_pct]
    if not clear:
        raise _no_scene(request, client, url, None if filtered else items)
    granules = [granule_from_item(i, source=request.source, level=request.level) for i in clear]
    return sorted(granules, key=lambda g: (g.sensed, g.tile))


def _cloud_pct(item: Item) -> float | None:
    value = item["properties"].get("eo:cloud_cover")
    return None if value is None else float(value)


def _no_scene(
    request: SearchRequest, client: Client, url: str, everything: list[Item] | None
) -> InputError:
    """'Nothing found', saying whether cloudier scenes exist (asking again without the cloud
    limit when the catalogue applied it) and what to widen."""
    if everything is None:
        everything = _search_items(
            client,
            url,
            collection=request.collection,
            bbox=request.bbox,
            datetime=request.datetime_range,
        )
    if everything:
        least = min((c for c in map(_cloud_pct, everything) if c is not None), default=None)
        cloudier = f"; {len(everything)} cloudier scene(s) exist" + (
            f", the clearest at {least:.1f} %" if least is not None else ""
        )
        widen = "raise --max-cloud, or widen --season/--dates"
    else:
        cloudier = ""
        widen = "widen --season/--dates, or check that the AOI is on land Sentinel-2 images"
    return InputError(
        f"no Sentinel-2 scene found in {url}: {request.describe()}{cloudier}; {widen}"
    )


def granule_from_item(item: Item, *, source: Source, level: Level) -> Granule:
    """One STAC item of a Sentinel-2 collection → a :class:`Granule` with readable hrefs."""
    props = item["properties"]
    tile = item_tile(props, item["id"])
    baseline = props.get("s2:processing_baseline") or _baseline_from_name(
        str(props.get("s2:product_uri", ""))
    )
    hrefs = _granule_hrefs(item, tile=tile, source=source, level=level)
    if not props.get("datetime"):
        raise InputError(f"STAC item {item['id']} has no datetime; the catalogue's item is broken")
    return Granule(
        item_id=item["id"],
        collection=item.get("collection") or sources.S2_COLLECTIONS[(source, level)],
        level=level,
        tile=tile,
        sensed=datetime.fromisoformat(str(props["datetime"]).replace("Z", "+00:00")),
        platform=str(props.get("platform", "")),
        baseline=str(baseline) if baseline else None,
        scene_cloud_pct=_cloud_pct(item),
        footprint=item.get("geometry") or {},
        epsg=item_epsg(props),
        bands=hrefs["bands"],
        metadata=hrefs.get("metadata"),
        cloud_mask=hrefs.get("cloud_mask"),
        properties=dict(props),
    )


def item_tile(props: Mapping[str, Any], item_id: str = "") -> str:
    """The MGRS tile (``27VWK``) from whichever properties the catalogue writes."""
    if props.get("mgrs:utm_zone") is not None and props.get("mgrs:latitude_band"):
        zone = int(props["mgrs:utm_zone"])
        return f"{zone:02d}{props['mgrs:latitude_band']}{props.get('mgrs:grid_square', '')}"
    code = str(props.get("grid:code", ""))
    if code.startswith("MGRS-"):
        return code.removeprefix("MGRS-")
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    match = re.search(r"_T(\d{2}[A-Z]{3})_", str(props.get("s2:product_uri", "")))
    if match:
        return match.group(1)
    raise InputError(f"STAC item {item_id} names no MGRS tile; the catalogue's item is broken")


def item_epsg(props: Mapping[str, Any]) -> int | None:
    """``proj:epsg`` (STAC projection extension 1.x) or ``proj:code`` ``EPSG:N`` (2.x)."""
    if props.get("proj:epsg") is not None:
        return int(props["proj:epsg"])
    code = str(props.get("proj:code") or "")
    return int(code.split(":")[1]) if code.upper().startswith("EPSG:") else None


def _baseline_from_name(product_uri: str) -> str | None:
    match = _BASELINE_IN_NAME.search(product_uri)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def baseline_at_least(baseline: str | None, minimum: str) -> bool:
    """Whether a processing baseline (``"05.10"``) is at least ``minimum`` (``"04.00"``)."""
    if not baseline:
        return False
    return _version(baseline) >= _version(minimum)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _granule_hrefs(item: Item, *, tile: str, source: Source, level: Level) -> dict[str, Any]:
    if level == "l2a":
        return _l2a_hrefs(item)
    if source == "cdse":
        return _cdse_l1c_hrefs(item, tile=tile)
    props = item["properties"]
    paths = safe_paths(
        tile=tile,
        product_uri=_required(props, "s2:product_uri", item["id"]),
        granule_id=_required(props, "s2:granule_id", item["id"]),
        datastrip_id=_required(props, "s2:datastrip_id", item["id"]),
        baseline=props.get("s2:processing_baseline"),
    )
    base = sources.l1c_base_url()
    return {
        "bands": {band: f"{base}/{paths[band]}" for band in OPTICAL_BANDS},
        "metadata": f"{base}/{paths['metadata']}",
        "cloud_mask": f"{base}/{paths['cloud_mask']}",
    }


def _required(props: Mapping[str, Any], key: str, item_id: str) -> str:
    value = props.get(key)
    if not value:
        raise InputError(
            f"STAC item {item_id} has no {key}, which glaviz needs to find the granule's files; "
            "use another source (--source) or report the catalogue's item"
        )
    return str(value)


# --- the SAFE layout in Google Cloud's bucket ---------------------------------------------------


def safe_paths(
    *, tile: str, product_uri: str, granule_id: str, datastrip_id: str, baseline: str | None = None
) -> dict[str, str]:
    """Paths of one L1C granule's files relative to the bucket root, by role: each band of
    :data:`OPTICAL_BANDS`, ``metadata`` (the product's ``MTD_MSIL1C.xml``), ``tile_metadata``
    (``MTD_TL.xml``) and ``cloud_mask`` (``MSK_CLASSI_B00.jp2`` from baseline 04.00 on, the
    vector ``MSK_CLOUDS_B00.gml`` before it).

    The layout is the one Google documents for ``gs://gcp-public-data-sentinel-2``
    (https://cloud.google.com/storage/docs/public-datasets/sentinel-2, "Dataset structure"):
    ``tiles/[UTM zone]/[latitude band]/[grid square]/[product name].SAFE/``, and inside it the
    SAFE format of ESA's Sentinel-2 Product Specification (compact naming, products from
    6 December 2016 on): ``MTD_MSIL1C.xml`` at the top, and
    ``GRANULE/L1C_T<tile>_A<absolute orbit>_<datastrip sensing start>/`` holding
    ``IMG_DATA/T<tile>_<datatake sensing start>_<band>.jp2`` and ``QI_DATA/``. The absolute orbit
    comes from the granule id (``_A036143_``), the datastrip's sensing start from the datastrip id
    (``_S20240206T131359_``) and the datatake's from the product name (its third field).
    """
    if not product_uri.startswith(("S2A_MSIL1C_", "S2B_MSIL1C_", "S2C_MSIL1C_", "S2D_MSIL1C_")):
        raise InputError(
            f"product {product_uri} does not use the compact SAFE naming (products before "
            "6 December 2016 use a longer one that glaviz does not map); choose dates from "
            "December 2016 on, or use --source cdse"
        )
    safe = product_uri if product_uri.endswith(".SAFE") else f"{product_uri}.SAFE"
    datatake = safe.split("_")[2]
    orbit = _field(granule_id, r"_A(\d{6})_", "absolute orbit", "s2:granule_id")
    strip_start = _field(datastrip_id, r"_S(\d{8}T\d{6})_", "sensing start", "s2:datastrip_id")
    zone, band, square = tile[:2], tile[2], tile[3:]
    root = f"tiles/{int(zone)}/{band}/{square}/{safe}"
    granule = f"{root}/GRANULE/L1C_T{tile}_A{orbit}_{strip_start}"
    paths = {b: f"{granule}/IMG_DATA/T{tile}_{datatake}_{b}.jp2" for b in OPTICAL_BANDS}
    paths["metadata"] = f"{root}/MTD_MSIL1C.xml"
    paths["tile_metadata"] = f"{granule}/MTD_TL.xml"
    baseline = baseline or _baseline_from_name(safe)
    mask = "MSK_CLASSI_B00.jp2" if baseline_at_least(baseline, "04.00") else "MSK_CLOUDS_B00.gml"
    paths["cloud_mask"] = f"{granule}/QI_DATA/{mask}"
    return paths


def _field(text: str, pattern: str, what: str, key: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise InputError(f"cannot read the {what} from {key} {text!r}; report the catalogue item")
    return match.group(1)


# --- other sources and levels -------------------------------------------------------------------


def _asset_href(item: Item, *keys: str) -> str | None:
    assets = item.get("assets") or {}
    for key in keys:
        if key in assets and assets[key].get("href"):
            return str(assets[key]["href"])
    return None


def _l2a_hrefs(item: Item) -> dict[str, Any]:
    """Earth Search L2A COGs by common name (CDSE's by band name), moved onto a mirror if set."""
    bands: dict[str, str] = {}
    for band in OPTICAL_BANDS:
        href = _asset_href(item, COMMON_NAMES[band], band, f"{band}_10m", f"{band}_20m")
        if href is None:
            raise InputError(f"STAC item {item['id']} has no asset for {band}; use another source")
        bands[band] = _readable(href)
    metadata = _asset_href(item, "product_metadata", "granule_metadata")
    mask = _asset_href(item, "scl", "SCL_20m")
    return {
        "bands": bands,
        "metadata": _readable(metadata) if metadata else None,
        "cloud_mask": _readable(mask) if mask else None,
    }


def _cdse_l1c_hrefs(item: Item, *, tile: str) -> dict[str, Any]:
    """CDSE L1C: the item's own band hrefs (``s3://eodata/…``), its ``product_metadata`` asset
    (``MTD_MSIL1C.xml``), and the cloud mask at its place in the same SAFE folder; the metadata
    too where an item lacks that asset."""
    bands: dict[str, str] = {}
    for band in OPTICAL_BANDS:
        href = _asset_href(item, band, f"{band}_10m", f"{band}_20m", COMMON_NAMES[band])
        if href is None:
            raise InputError(f"STAC item {item['id']} has no asset for {band}; use another source")
        bands[band] = _readable(href)
    first = bands[OPTICAL_BANDS[0]]
    safe_root = first[: first.index(".SAFE/") + len(".SAFE")] if ".SAFE/" in first else None
    granule_dir = first.rsplit("/IMG_DATA/", 1)[0] if "/IMG_DATA/" in first else None
    baseline = item["properties"].get("s2:processing_baseline") or _baseline_from_name(first)
    mask = "MSK_CLASSI_B00.jp2" if baseline_at_least(baseline, "04.00") else "MSK_CLOUDS_B00.gml"
    metadata = _asset_href(item, "product_metadata")
    if metadata is None and safe_root:
        metadata = f"{safe_root}/MTD_MSIL1C.xml"
    return {
        "bands": bands,
        "metadata": _readable(metadata) if metadata else None,
        "cloud_mask": f"{granule_dir}/QI_DATA/{mask}" if granule_dir else None,
    }


def _readable(href: str) -> str:
    """An asset href as GDAL reads it: ``s3://bucket/key`` → ``/vsis3/bucket/key`` (CDSE's
    ``eodata``, read in :meth:`CdseCredentials.rasterio_env`); HTTP hrefs onto their mirror."""
    if href.startswith("s3://"):
        return "/vsis3/" + href.removeprefix("s3://")
    return sources.l2a_href(href)


# --- Copernicus DEM -----------------------------------------------------------------------------


def dem_cell(item_id: str) -> tuple[int, int] | None:
    """(south latitude, west longitude) of the 1° cell a Copernicus DEM item covers."""
    match = _DEM_CELL.search(item_id)
    if match is None:
        return None
    lat = int(match.group(2)) * (1 if match.group(1) == "N" else -1)
    lon = int(match.group(4)) * (1 if match.group(3) == "E" else -1)
    return lat, lon


def bbox_cells(bbox: Bbox) -> set[tuple[int, int]]:
    """The 1° cells (south, west corner) that a lon/lat box touches."""
    west, south, east, north = bbox
    lats = range(math.floor(south), max(math.ceil(north), math.floor(south) + 1))
    lons = range(math.floor(west), max(math.ceil(east), math.floor(west) + 1))
    return {(lat, lon) for lat in lats for lon in lons}


def search_dem(
    bbox: tuple[float, float, float, float], *, stac_url: str | None = None
) -> list[DemTile]:
    """The Copernicus DEM tiles under ``bbox``: GLO-30, and GLO-90 for the cells GLO-30 lacks
    (a few countries' tiles are withheld from the public GLO-30). Cells with neither are ocean,
    where the DEM's documentation says to take 0 m; the list is then shorter, or empty."""
    url = sources.dem_stac_url(stac_url)
    client = open_catalogue(url)
    wanted = bbox_cells(bbox)
    tiles = _dem_tiles(client, url, "GLO-30", bbox, wanted)
    missing = wanted - {dem_cell(t.item_id) for t in tiles}
    if missing:
        fill = _dem_tiles(client, url, "GLO-90", _cells_bbox(missing, bbox), missing)
        tiles += [t for t in fill if dem_cell(t.item_id) in missing]
    return sorted(tiles, key=lambda t: t.item_id)


def _dem_tiles(
    client: Client, url: str, product: DemProduct, bbox: Bbox, cells: set[tuple[int, int]]
) -> list[DemTile]:
    items = _search_items(client, url, collection=sources.DEM_COLLECTIONS[product], bbox=bbox)
    found: dict[str, DemTile] = {}
    for item in items:
        if dem_cell(item["id"]) in cells:
            href = sources.dem_href(product, item["id"])
            found[item["id"]] = DemTile(item["id"], href, product, item.get("geometry") or {})
    return list(found.values())


def _cells_bbox(cells: Iterable[tuple[int, int]], within: Bbox) -> Bbox:
    """The part of ``within`` that the cells cover (a smaller second search)."""
    cells = list(cells)
    west = max(min(lon for _, lon in cells), within[0])
    south = max(min(lat for lat, _ in cells), within[1])
    east = min(max(lon for _, lon in cells) + 1, within[2])
    north = min(max(lat for lat, _ in cells) + 1, within[3])
    return west, south, east, north
