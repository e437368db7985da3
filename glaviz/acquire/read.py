"""Reading remote granules: GDAL's ``/vsicurl/`` tuned for object stores, and a local cache.

Every remote file a run reads is kept under the glaviz cache folder, one folder per granule (or
DEM tile) and one file per band: ``$GLAVIZ_HOME/acquire/<collection>/<item id>/B02.tif``. A
re-run, a second AOI on the same tile, or a median over dates already fetched for a ``best``
run reads nothing from the server again. Rasters are fetched window by window through
``/vsicurl/`` (HTTP range requests) and stored as tiled, DEFLATE-compressed GeoTIFFs: the JPEG
2000 of Level-1C is decoded once, at the fetch, and every later window read is a cheap local
read. Small files (product metadata, vector cloud masks) are downloaded whole: over HTTP with the
resumable downloader of the registry, and from CDSE's S3 bucket with boto3, which signs each
request with the user's keys.

Whole files, not only the AOI's window, are cached on purpose: a Sentinel-2 band file is one
JPEG 2000 codestream, whose header and tile index every windowed read fetches again, so caching
windows would still send some bytes twice for each new AOI. A band file is tens of MB (20 m)
to over 100 MB (10 m); each is fetched once, whatever the number of AOIs, reruns or composites.

Each cache file is written under a temporary name and renamed when complete, under an
inter-process lock, so two runs that need the same band fetch it once and a killed fetch leaves
nothing that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glaviz.errors import DownloadError, first_line
from glaviz.runs.atomic import atomic_path
from glaviz.util.progress import Progress

if TYPE_CHECKING:
    import rasterio

#: The cache's folder under ``$GLAVIZ_HOME``.
CACHE_FOLDER = "acquire"
#: Rows of a remote raster copied per read: a multiple of the 1024-pixel tiles of Sentinel-2's
#: JPEG 2000 files and of the 512-pixel tiles of the cache files, so each is decoded once.
COPY_ROWS = 1024
#: Seconds GDAL waits before retrying a failed HTTP request (doubled at each retry by GDAL).
HTTP_RETRY_DELAY_S = 1.0
#: How many times GDAL retries one HTTP request that failed with 429, 5xx or a timeout.
HTTP_MAX_RETRY = 3

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def gdal_env() -> dict[str, Any]:
    """The GDAL configuration for reading remote rasters (pass to ``rasterio.Env``)."""
    return {
        # Opening a file makes GDAL list its folder to look for side files (.aux.xml, .ovr,
        # world files). On an object store that is an extra request per open, and on a SAFE
        # folder a listing of thousands of keys; Sentinel-2 and DEM files have no side files.
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        # Only these extensions are opened over HTTP: GDAL never probes for other side files.
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".jp2,.tif,.tiff,.TIF,.xml,.gml",
        # Transient failures (429, 5xx, timeouts) are retried by GDAL itself a bounded number of
        # times, with a delay that doubles; after that the read fails and the run stops.
        "GDAL_HTTP_MAX_RETRY": str(HTTP_MAX_RETRY),
        "GDAL_HTTP_RETRY_DELAY": str(HTTP_RETRY_DELAY_S),
        # A stalled server fails the read instead of hanging the run.
        "GDAL_HTTP_CONNECTTIMEOUT": "10",
        "GDAL_HTTP_TIMEOUT": "60",
        # Adjacent byte ranges of one read are merged into one request, and the ranges of one
        # read that are not adjacent (the tiles of a COG window) are fetched in parallel, over
        # one connection where the server speaks HTTP/2 (GDAL's default: HTTP/2 over TLS only).
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIRANGE": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
        # Reads are whole rows of a file read in order, so large chunks (2 MB instead of 16 kB)
        # mean few requests; the in-memory cache of fetched chunks (256 MB) keeps header and
        # index reads that GDAL repeats from going to the server twice within one copy.
        "CPL_VSIL_CURL_CHUNK_SIZE": str(2 * 2**20),
        "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 2**20),
        # The block cache holds the decoded tiles of one row of 1024-pixel tiles (a 10 m band
        # row is 22 MB); GDAL's default, 5 % of the RAM, would let the cache set peak memory.
        "GDAL_CACHEMAX": 256,
        # Fetches run one file at a time; JPEG 2000 tiles of a row are decoded in parallel.
        "GDAL_NUM_THREADS": "ALL_CPUS",
    }


def cache_root() -> Path:
    """The folder of cached granules and DEM tiles."""
    from glaviz.registry.cache import glaviz_home

    return glaviz_home() / CACHE_FOLDER


def cache_key(*parts: str) -> Path:
    """A relative cache folder from catalogue names (collection, item id), made file-safe."""
    return Path(*(_UNSAFE.sub("_", p).strip("._") or "_" for p in parts))


def is_remote(href: str) -> bool:
    """Whether ``href`` is read over the network (HTTP, or CDSE's S3 as ``/vsis3/``)."""
    return href.startswith(("http://", "https://", "/vsis3/"))


def vsicurl(href: str) -> str:
    """The GDAL path of ``href``: ``/vsicurl/`` for URLs, anything else as it is."""
    return f"/vsicurl/{href}" if href.startswith(("http://", "https://")) else href


def _remote_env(href: str) -> rasterio.Env:
    """The ``rasterio.Env`` to read ``href`` in: :func:`gdal_env`, and for CDSE's ``/vsis3/``
    the user's keys (read when needed, never kept)."""
    import rasterio

    if href.startswith("/vsis3/"):
        from glaviz.acquire.sources import cdse_credentials

        return cdse_credentials().rasterio_env(**gdal_env())
    return rasterio.Env(**gdal_env())


class GranuleCache:
    """Fetches remote files into the cache once; local hrefs are used where they are.

    ``fetched`` counts the files this instance actually fetched (the tests and the run record
    use it to show that a re-run read nothing).
    """

    def __init__(self, root: Path | None = None, *, progress: bool = False) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.progress = progress
        self.fetched: list[str] = []

    def raster(self, href: str, folder: Path, name: str) -> Path:
        """A local GeoTIFF of the raster at ``href`` (``name``: e.g. ``B02``)."""
        if not is_remote(href):
            return Path(href)
        target = self.root / folder / f"{name}.tif"
        with _locked(target):
            if not target.is_file():
                copy_remote_raster(href, target, progress=self.progress)
                self.fetched.append(href)
        return target

    def file(self, href: str, folder: Path, name: str) -> Path:
        """A local copy of the small file at ``href`` (metadata XML, GML mask)."""
        if not is_remote(href):
            return Path(href)
        target = self.root / folder / name
        with _locked(target):
            if not target.is_file():
                _download_small(href, target)
                self.fetched.append(href)
        return target


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold the inter-process lock of one cache file (the hidden ``.NAME.lock`` beside it)."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(f".{target.name}.lock"))):
        yield


def copy_remote_raster(href: str, target: Path, *, progress: bool = False) -> None:
    """Copy the raster at ``href`` into the tiled GeoTIFF ``target``, a row of tiles at a time.

    Memory is one row of :data:`COPY_ROWS` rows of the raster (22 MB for a 10 m band) plus GDAL's
    caches. Raises :class:`DownloadError` naming the URL when the server cannot be read.
    """
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    try:
        with _remote_env(href), rasterio.open(vsicurl(href)) as src:
            profile = _cache_profile(src)
            rows = range(0, src.height, COPY_ROWS)
            bar = Progress(progress, total=len(rows), description=f"fetch {Path(href).name}")
            with bar, atomic_path(target) as tmp, rasterio.open(tmp, "w", **profile) as dst:
                for row in rows:
                    window = Window(0, row, src.width, min(COPY_ROWS, src.height - row))
                    dst.write(src.read(window=window), window=window)
                    bar.advance()
    except RasterioError as exc:
        raise DownloadError(
            f"could not read {href} ({first_line(exc)}); check the network, or the base URL "
            "of the mirror if one is set, and run again (files fetched so far are cached)"
        ) from None


def _cache_profile(src: Any) -> dict[str, Any]:
    """A tiled, compressed GeoTIFF like ``src``: fast windowed reads, about the JP2's size."""
    floating = src.dtypes[0].startswith("float")
    return {
        "driver": "GTiff",
        "width": src.width,
        "height": src.height,
        "count": src.count,
        "dtype": src.dtypes[0],
        "crs": src.crs,
        "transform": src.transform,
        "nodata": src.nodata,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        # Level 1 of DEFLATE with a predictor: most of the size gain at a fraction of the time.
        "compress": "DEFLATE",
        "zlevel": 1,
        "predictor": 3 if floating else 2,
        "BIGTIFF": "IF_SAFER",
    }


def _download_small(href: str, target: Path) -> None:
    """Download a small file whole (retried), then rename it into the cache."""
    from glaviz.registry.download import RetryPolicy, download

    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        if href.startswith("/vsis3/"):
            _download_s3(href, part)
        elif href.startswith(("http://", "https://")):
            policy = RetryPolicy(attempts=HTTP_MAX_RETRY + 1, backoff_s=HTTP_RETRY_DELAY_S)
            download(href, part, policy=policy)
        else:
            raise DownloadError(f"cannot fetch {href}: glaviz reads remote files over HTTP or S3")
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
        part.with_name(part.name + ".json").unlink(missing_ok=True)


def _download_s3(href: str, part: Path) -> None:
    """Download ``/vsis3/BUCKET/KEY`` from CDSE's S3 service into ``part`` with the user's keys.

    GDAL signs its own ``/vsis3/`` raster reads, but a product's metadata XML and a GML mask are
    not rasters; boto3 signs these requests (AWS Signature Version 4, path-style addressing as
    CDSE serves) and retries throttling and 5xx answers a bounded number of times.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from glaviz.acquire.sources import CDSE_S3_ENDPOINT_ENV, cdse_credentials

    bucket, _, key = href.removeprefix("/vsis3/").partition("/")
    keys = cdse_credentials()
    client = keys.s3_client(attempts=HTTP_MAX_RETRY + 1, timeout_s=60)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with part.open("wb") as handle:
            for chunk in body.iter_chunks(2**20):
                handle.write(chunk)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in {401, 403}:
            hint = f"the keys from {keys.origin} were refused; check them"
        elif status == 404:
            hint = "the bucket has no such file; the catalogue item is stale, choose other dates"
        else:
            hint = "check the network and run again (files fetched so far are cached)"
        raise DownloadError(
            f"could not read {href} (HTTP {status} {error.get('Code', '')}".rstrip() + f"); {hint}"
        ) from None
    except BotoCoreError as exc:
        raise DownloadError(
            f"could not read {href} ({first_line(exc)}); check the network, or "
            f"{CDSE_S3_ENDPOINT_ENV} if it is set, and run again (files fetched so far are cached)"
        ) from None
