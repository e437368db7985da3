"""Where Sentinel-2 and the Copernicus DEM come from: catalogues, collections, buckets, mirrors and
the Copernicus Data Space credentials.

Everything a user may point elsewhere is an environment variable read here and nowhere else:

- ``GLAVIZ_STAC_URL``: a STAC API to search instead of the source's public one (a mirror, or the
  local test server); ``--stac-url`` wins over it;
- ``GLAVIZ_S2_L1C_BASE_URL``: the Google Cloud bucket that holds the L1C SAFE folders
  (default ``https://storage.googleapis.com/gcp-public-data-sentinel-2``);
- ``GLAVIZ_S2_L2A_BASE_URL``: the bucket of Earth Search's L2A COGs
  (default ``https://sentinel-cogs.s3.us-west-2.amazonaws.com``);
- ``GLAVIZ_DEM_BASE_URL``: a folder holding ``copernicus-dem-30m/`` and ``copernicus-dem-90m/``
  (default: each bucket's own address on AWS);
- ``GLAVIZ_CDSE_S3_ENDPOINT``: the S3 service holding CDSE's ``eodata`` bucket
  (default ``https://eodata.dataspace.copernicus.eu``; ``http://`` for a local test server).

A mirror keeps the bucket's relative paths, so the same item maps to the same file under any base.
CDSE credentials are read from the environment or ``~/.netrc`` when needed, are never a command-line
option, and their ``repr`` hides them so that no log or run record can hold them.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from glaviz.acquire.granule import DemProduct, Level
from glaviz.config.acquire import Source
from glaviz.errors import ConfigError

if TYPE_CHECKING:
    import rasterio
    from botocore.client import BaseClient as S3Client

STAC_URL_ENV = "GLAVIZ_STAC_URL"
L1C_BASE_ENV = "GLAVIZ_S2_L1C_BASE_URL"
L2A_BASE_ENV = "GLAVIZ_S2_L2A_BASE_URL"
DEM_BASE_ENV = "GLAVIZ_DEM_BASE_URL"
CDSE_ACCESS_KEY_ENV = "GLAVIZ_CDSE_S3_ACCESS_KEY"
CDSE_SECRET_KEY_ENV = "GLAVIZ_CDSE_S3_SECRET_KEY"
CDSE_S3_ENDPOINT_ENV = "GLAVIZ_CDSE_S3_ENDPOINT"

#: The public STAC APIs. Earth Search needs no account; the CDSE search is open too, only its
#: downloads need credentials.
STAC_URLS: dict[Source, str] = {
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "cdse": "https://stac.dataspace.copernicus.eu/v1",
}
#: Sentinel-2 collection per source and level. Earth Search's ``sentinel-2-c1-l2a`` is its
#: reprocessed L2A (collection 1), with the BOA offset already applied to the COGs.
S2_COLLECTIONS: dict[tuple[Source, Level], str] = {
    ("earth-search", "l1c"): "sentinel-2-l1c",
    ("earth-search", "l2a"): "sentinel-2-c1-l2a",
    ("cdse", "l1c"): "sentinel-2-l1c",
    ("cdse", "l2a"): "sentinel-2-l2a",
}
#: Copernicus DEM collections of Earth Search (also searched when the imagery comes from CDSE:
#: the DEM buckets on AWS are public).
DEM_COLLECTIONS: dict[DemProduct, str] = {"GLO-30": "cop-dem-glo-30", "GLO-90": "cop-dem-glo-90"}
#: The public AWS buckets of the DEM; objects are ``<item id>/<item id>.tif`` (the buckets'
#: readme, https://copernicus-dem-30m.s3.amazonaws.com/readme.html).
DEM_BUCKETS: dict[DemProduct, str] = {
    "GLO-30": "copernicus-dem-30m",
    "GLO-90": "copernicus-dem-90m",
}

L1C_BUCKET_URL = "https://storage.googleapis.com/gcp-public-data-sentinel-2"
L2A_BUCKET_URL = "https://sentinel-cogs.s3.us-west-2.amazonaws.com"
#: The S3 endpoint of CDSE's ``eodata`` bucket, where its STAC assets (``s3://eodata/…``) live.
CDSE_S3_ENDPOINT = "eodata.dataspace.copernicus.eu"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def stac_url(source: Source, override: str | None = None) -> str:
    """The STAC API to search: ``--stac-url``, else ``$GLAVIZ_STAC_URL``, else the source's."""
    return (override or _env(STAC_URL_ENV) or STAC_URLS[source]).rstrip("/")


def dem_stac_url(override: str | None = None) -> str:
    """The STAC API for the DEM: the same mirror as the imagery when one is set, else Earth
    Search (whatever the imagery's source: the DEM is public there)."""
    return stac_url("earth-search", override)


def l1c_base_url() -> str:
    """The URL of the L1C bucket (``…/tiles/UU/L/SS/<product>.SAFE/…`` below it)."""
    return (_env(L1C_BASE_ENV) or L1C_BUCKET_URL).rstrip("/")


def l2a_href(href: str) -> str:
    """An Earth Search L2A asset href, moved onto ``$GLAVIZ_S2_L2A_BASE_URL`` when that is set."""
    base = _env(L2A_BASE_ENV)
    if base is None or not href.startswith(L2A_BUCKET_URL):
        return href
    return base.rstrip("/") + href[len(L2A_BUCKET_URL) :]


def dem_href(product: DemProduct, item_id: str) -> str:
    """The COG of one DEM tile: ``<base>/<bucket>/<id>/<id>.tif`` under a mirror, else the AWS
    bucket's own URL. Built from the item id, which is the bucket's documented key, so items of
    any catalogue that names tiles the Copernicus way map to the same file."""
    bucket = DEM_BUCKETS[product]
    key = f"{item_id}/{item_id}.tif"
    base = _env(DEM_BASE_ENV)
    if base is not None:
        return f"{base.rstrip('/')}/{bucket}/{key}"
    return f"https://{bucket}.s3.amazonaws.com/{key}"


@dataclass(frozen=True)
class CdseCredentials:
    """S3 keys for CDSE's ``eodata`` bucket. The keys never show in a ``repr``."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    origin: str = "environment"

    def rasterio_env(self, **options: Any) -> rasterio.Env:
        """A ``rasterio.Env`` (with ``options`` besides) in which GDAL reads ``/vsis3/eodata/…``.

        rasterio refuses AWS keys as plain GDAL options and takes them through its
        ``AWSSession``; CDSE serves path-style S3 at its own endpoint. No region is set, so GDAL
        signs for its default one, as CDSE's GDAL instructions do.
        """
        import boto3
        import rasterio
        from rasterio.session import AWSSession

        endpoint = urlsplit(cdse_s3_endpoint())
        keys = boto3.Session(
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key
        )
        return rasterio.Env(
            session=AWSSession(session=keys, endpoint_url=endpoint.netloc),
            AWS_VIRTUAL_HOSTING="FALSE",
            AWS_HTTPS="NO" if endpoint.scheme == "http" else "YES",
            **options,
        )

    def s3_client(self, *, attempts: int, timeout_s: float) -> S3Client:
        """A boto3 S3 client of CDSE's endpoint, for the files that are not rasters (metadata XML,
        GML masks): it signs each request and retries throttling and 5xx ``attempts`` times."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=cdse_s3_endpoint(),
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            # CDSE's S3 takes any region name in a signature; its own boto3 examples say "default".
            region_name="default",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": attempts},
                connect_timeout=min(timeout_s, 10),
                read_timeout=timeout_s,
            ),
        )


def cdse_s3_endpoint() -> str:
    """The URL of the S3 service that holds CDSE's ``eodata`` bucket (no trailing slash):
    ``$GLAVIZ_CDSE_S3_ENDPOINT`` when set, else CDSE's own."""
    endpoint = (_env(CDSE_S3_ENDPOINT_ENV) or f"https://{CDSE_S3_ENDPOINT}").rstrip("/")
    if urlsplit(endpoint).scheme not in {"http", "https"} or not urlsplit(endpoint).netloc:
        raise ConfigError(
            f"{CDSE_S3_ENDPOINT_ENV}={endpoint!r} is not an http(s) URL; set it like "
            f"https://{CDSE_S3_ENDPOINT}, or unset it"
        )
    return endpoint


def _netrc_credentials(path: Path) -> CdseCredentials | None:
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(path).authenticators(CDSE_S3_ENDPOINT)
    except (netrc.NetrcParseError, OSError) as exc:
        raise ConfigError(
            f"cannot read {path} for the CDSE credentials ({exc}); fix the file or set "
            f"{CDSE_ACCESS_KEY_ENV} and {CDSE_SECRET_KEY_ENV}"
        ) from None
    if entry is None or not entry[0] or not entry[2]:
        return None
    return CdseCredentials(entry[0], entry[2], origin=str(path))


def cdse_credentials(*, netrc_path: Path | None = None) -> CdseCredentials:
    """The CDSE S3 keys: ``$GLAVIZ_CDSE_S3_ACCESS_KEY`` and ``$GLAVIZ_CDSE_S3_SECRET_KEY``, else
    ``machine eodata.dataspace.copernicus.eu login KEY password SECRET`` in ``~/.netrc`` (or
    ``$NETRC``). Raises :class:`ConfigError` naming both ways when neither is there."""
    access, secret = _env(CDSE_ACCESS_KEY_ENV), _env(CDSE_SECRET_KEY_ENV)
    if access and secret:
        return CdseCredentials(access, secret)
    path = netrc_path or Path(_env("NETRC") or Path.home() / ".netrc").expanduser()
    found = _netrc_credentials(path)
    if found is not None:
        return found
    half = " (only one of the two is set)" if access or secret else ""
    raise ConfigError(
        f"--source cdse needs Copernicus Data Space S3 credentials{half}: set "
        f"{CDSE_ACCESS_KEY_ENV} and {CDSE_SECRET_KEY_ENV}, or add 'machine {CDSE_S3_ENDPOINT} "
        f"login <access key> password <secret key>' to {path}; keys are made at "
        "https://eodata-s3keysmanager.dataspace.copernicus.eu (or use --source earth-search, "
        "which needs no account)"
    )


# --- licences and attributions ------------------------------------------------------------------

#: The terms each data set comes under, for the run record and the docs.
LICENCES: dict[str, dict[str, str]] = {
    "sentinel-2": {
        "name": "Legal notice on the use of Copernicus Sentinel Data and Service Information",
        "url": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
        "terms": "free, full and open use, including modification and redistribution; name the "
        "source and say that the data were modified",
    },
    "copernicus-dem": {
        "name": "Copernicus DEM licence (GLO-30 Public and GLO-90)",
        "url": "https://spacedata.copernicus.eu/documents/20126/0/CSCDA_ESA_Mission-specific+Annex.pdf",
        "terms": "free use, including commercial use and redistribution, with the attribution "
        "below",
    },
}
#: The credit the Copernicus DEM licence asks for.
DEM_ATTRIBUTION = (
    "© DLR e.V. 2010-2014 and © Airbus Defence and Space GmbH 2014-2018 provided under "
    "COPERNICUS by the European Union and ESA; all rights reserved"
)


def sentinel2_attribution(years: Iterable[int]) -> str:
    """The credit the Sentinel legal notice asks for when the data were modified (glaviz
    converts, resamples and composites them): ``Contains modified Copernicus Sentinel data
    2023`` (years joined, ``2022-2023`` for a range)."""
    span = sorted(set(years))
    if not span:
        raise ValueError("an attribution needs the years of the data")
    text = str(span[0]) if len(span) == 1 else f"{span[0]}-{span[-1]}"
    return f"Contains modified Copernicus Sentinel data {text}"
