"""Tiny Sentinel-2 granules and Copernicus DEM tiles, written the way the real ones are.

Each granule has the files the reader needs, in their real formats: JPEG 2000 bands (10 m B02,
B03, B04, B08; 20 m B11, B12; written losslessly, so a DN read back is the DN written), the
product metadata XML of its processing baseline (``RADIO_ADD_OFFSET`` -1000 from 04.00 on, none
before), and the cloud mask of its baseline (``MSK_CLASSI_B00.jp2`` at 60 m from 04.00 on,
``MSK_CLOUDS_B00.gml`` before). DEM tiles are float32 Cloud-Optimised GeoTIFFs in EPSG:4326.

Files go either to flat names in a folder (unit tests build :class:`Granule` records directly)
or to the relative paths of the hrefs a catalogue search produced (:func:`write_for_granule`), so
that a local range server stands in for the bucket with the bucket's own layout.

The DN pattern is known in closed form (:func:`dn_10m`, :func:`dn_20m`), so tests compare
reflectances against hand-computed values.
"""

# ruff: noqa: E501  (the XML templates keep the real files' long one-line elements)
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.acquire.granule import OPTICAL_BANDS, DemTile, Granule

TEN_M = ("B02", "B03", "B04", "B08")
TWENTY_M = ("B11", "B12")
#: Sentinel-2 tile origins are multiples of 60 m; a granule here is a multiple of 6 pixels.
MASK_FACTOR = 6

_MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_URI>{uri}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-1C</PROCESSING_LEVEL>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
      <QUANTIFICATION_VALUE unit="none">{quantification}</QUANTIFICATION_VALUE>
{offsets}    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-1C_User_Product>
"""

_GML = """<?xml version="1.0" encoding="UTF-8"?>
<eop:Mask xmlns:eop="http://www.opengis.net/eop/2.0" xmlns:gml="http://www.opengis.net/gml/3.2" gml:id="MSK_CLOUDS">
  <gml:boundedBy><gml:Envelope srsName="urn:ogc:def:crs:EPSG::{epsg}"><gml:lowerCorner>{left} {bottom}</gml:lowerCorner><gml:upperCorner>{right} {top}</gml:upperCorner></gml:Envelope></gml:boundedBy>
  <eop:maskMembers>
{features}  </eop:maskMembers>
</eop:Mask>
"""

_FEATURE = """    <eop:MaskFeature gml:id="OPAQUE.{i}">
      <eop:maskType codeSpace="urn:gs2:S2PDGS:maskType">OPAQUE</eop:maskType>
      <eop:extentOf><gml:Polygon gml:id="OPAQUE.{i}.Polygon" srsName="urn:ogc:def:crs:EPSG::{epsg}"><gml:exterior><gml:LinearRing><gml:posList srsDimension="2">{pos}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></eop:extentOf>
    </eop:MaskFeature>
"""


def dn_10m(band: str, rows: np.ndarray, cols: np.ndarray, seed: int = 0) -> np.ndarray:
    """The DN of a 10 m band at pixel (row, col) of its granule: never 0, below 4100."""
    k = OPTICAL_BANDS.index(band)
    return np.asarray(
        1500 + 100 * k + 10 * ((np.asarray(rows) + cols + seed) % 50), dtype=np.uint16
    )


def dn_20m(band: str, seed: int = 0) -> int:
    """The DN of a 20 m band: one value over the granule, so bilinear resampling keeps it."""
    return 2000 + 100 * OPTICAL_BANDS.index(band) + seed


def mtd_xml(baseline: str, *, uri: str = "S2_TEST.SAFE", quantification: int = 10000) -> str:
    """Product metadata of ``baseline``: offsets of -1000 for every band from 04.00 on."""
    major = int(baseline.split(".")[0])
    offsets = ""
    if major >= 4:
        lines = "".join(
            f'        <RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>\n' for i in range(13)
        )
        offsets = f"      <Radiometric_Offset_List>\n{lines}      </Radiometric_Offset_List>\n"
    return _MTD.format(uri=uri, baseline=baseline, quantification=quantification, offsets=offsets)


@dataclass(frozen=True)
class GranuleSpec:
    """One granule to write: where (UTM ``epsg``, upper-left corner), how big, what baseline.

    ``size`` is the side in 10 m pixels (a multiple of 6). ``cloud`` is a box of 10 m pixels
    ``(row0, col0, row1, col1)`` (end exclusive, multiples of 6) flagged as cloud in the mask.
    ``nodata_cols`` leaves that many columns at the left DN 0 in every band (outside the swath).
    """

    item_id: str
    tile: str
    epsg: int
    left: float
    top: float
    size: int
    sensed: datetime
    baseline: str = "05.09"
    cloud: tuple[int, int, int, int] | None = None
    nodata_cols: int = 0
    seed: int = 0
    scene_cloud_pct: float = 1.0
    collection: str = "sentinel-2-l1c"

    @property
    def has_offset(self) -> bool:
        return int(self.baseline.split(".")[0]) >= 4


def _write_jp2(
    path: Path, array: np.ndarray, *, epsg: int, left: float, top: float, res: float
) -> None:
    """A lossless JPEG 2000 (OpenJPEG, reversible wavelet) with the given grid."""
    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.io import MemoryFile

    data = array if array.ndim == 3 else array[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": f"EPSG:{epsg}",
        "transform": Affine(res, 0, left, 0, -res, top),
    }
    block = 64 if min(data.shape[1:]) >= 64 else None
    options: dict[str, Any] = {"QUALITY": 100, "REVERSIBLE": "YES", "YCBCR420": "NO"}
    if block:
        options |= {"BLOCKXSIZE": 1024 if data.shape[2] >= 1024 else block,
                    "BLOCKYSIZE": 1024 if data.shape[1] >= 1024 else block}  # fmt: skip
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(data)
        with memory.open() as src:
            rasterio.shutil.copy(src, path, driver="JP2OpenJPEG", **options)
    path.with_name(path.name + ".aux.xml").unlink(missing_ok=True)


def band_array(spec: GranuleSpec, band: str) -> np.ndarray:
    """The DNs of ``band`` of the granule ``spec`` describes."""
    if band in TEN_M:
        rows, cols = np.mgrid[0 : spec.size, 0 : spec.size]
        data = dn_10m(band, rows, cols, spec.seed)
        data[:, : spec.nodata_cols] = 0
    else:
        half = spec.size // 2
        data = np.full((half, half), dn_20m(band, spec.seed), dtype=np.uint16)
        data[:, : (spec.nodata_cols + 1) // 2] = 0
    return data


def flat_paths() -> dict[str, str]:
    """File names of a granule's parts in a flat folder."""
    return {
        **{b: f"{b}.jp2" for b in OPTICAL_BANDS},
        "metadata": "MTD_MSIL1C.xml",
        "cloud_mask": "MSK_CLASSI_B00.jp2",
        "cloud_mask_gml": "MSK_CLOUDS_B00.gml",
    }


def write_files(root: Path, spec: GranuleSpec, paths: Mapping[str, str]) -> None:
    """Write every part of ``spec``'s granule at ``root / paths[part]``."""
    for band in OPTICAL_BANDS:
        res = 10.0 if band in TEN_M else 20.0
        _write_jp2(root / paths[band], band_array(spec, band), epsg=spec.epsg, left=spec.left,
                   top=spec.top, res=res)  # fmt: skip
    metadata = root / paths["metadata"]
    metadata.parent.mkdir(parents=True, exist_ok=True)
    metadata.write_text(mtd_xml(spec.baseline, uri=f"{spec.item_id}.SAFE"))
    mask = root / paths["cloud_mask"]
    if mask.suffix.lower() == ".gml":
        mask.parent.mkdir(parents=True, exist_ok=True)
        mask.write_text(clouds_gml(spec))
    else:
        _write_jp2(mask, classi_array(spec), epsg=spec.epsg, left=spec.left, top=spec.top,
                   res=10.0 * MASK_FACTOR)  # fmt: skip


def classi_array(spec: GranuleSpec) -> np.ndarray:
    """MSK_CLASSI_B00 at 60 m: band 1 opaque clouds (the ``cloud`` box), 2 cirrus (none), 3 snow
    (a strip that must not count as cloud)."""
    n = spec.size // MASK_FACTOR
    mask = np.zeros((3, n, n), dtype=np.uint8)
    if spec.cloud is not None:
        r0, c0, r1, c1 = (v // MASK_FACTOR for v in spec.cloud)
        mask[0, r0:r1, c0:c1] = 1
    mask[2, :, : max(1, n // 4)] = 1
    return mask


def clouds_gml(spec: GranuleSpec) -> str:
    """MSK_CLOUDS_B00.gml with the ``cloud`` box as one OPAQUE polygon (none: a clear tile)."""
    features = ""
    if spec.cloud is not None:
        r0, c0, r1, c1 = spec.cloud
        x0, x1 = spec.left + 10 * c0, spec.left + 10 * c1
        y0, y1 = spec.top - 10 * r0, spec.top - 10 * r1
        pos = " ".join(
            f"{x:g} {y:g}" for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))
        )
        features = _FEATURE.format(i=0, epsg=spec.epsg, pos=pos)
    right, bottom = spec.left + 10 * spec.size, spec.top - 10 * spec.size
    return _GML.format(epsg=spec.epsg, left=spec.left, bottom=bottom, right=right, top=spec.top,
                       features=features)  # fmt: skip


def footprint(spec: GranuleSpec) -> dict[str, Any]:
    """The granule's extent as a lon/lat GeoJSON polygon (what a STAC item's geometry is)."""
    from rasterio.warp import transform_geom

    x0, y0 = spec.left + 10 * spec.nodata_cols, spec.top
    x1, y1 = spec.left + 10 * spec.size, spec.top - 10 * spec.size
    ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    return dict(
        transform_geom(f"EPSG:{spec.epsg}", "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    )


def write_granule(folder: Path, spec: GranuleSpec) -> Granule:
    """Write ``spec``'s granule into ``folder`` (flat names) and return its record (local
    hrefs)."""
    paths = flat_paths()
    if not spec.has_offset:
        paths["cloud_mask"] = paths["cloud_mask_gml"]
    write_files(folder, spec, paths)
    return Granule(
        item_id=spec.item_id,
        collection=spec.collection,
        level="l1c",
        tile=spec.tile,
        sensed=spec.sensed,
        platform="sentinel-2b",
        baseline=spec.baseline,
        scene_cloud_pct=spec.scene_cloud_pct,
        footprint=footprint(spec),
        epsg=spec.epsg,
        bands={b: str(folder / paths[b]) for b in OPTICAL_BANDS},
        metadata=str(folder / paths["metadata"]),
        cloud_mask=str(folder / paths["cloud_mask"]),
    )


def relative_paths(granule: Granule, base_url: str) -> dict[str, str]:
    """The paths below ``base_url`` of every part of a granule a search returned."""

    def rel(href: str) -> str:
        assert href.startswith(base_url), (href, base_url)
        return href[len(base_url) :].lstrip("/")

    paths = {b: rel(granule.bands[b]) for b in OPTICAL_BANDS}
    assert granule.metadata is not None and granule.cloud_mask is not None
    return {**paths, "metadata": rel(granule.metadata), "cloud_mask": rel(granule.cloud_mask)}


def write_for_granule(root: Path, granule: Granule, spec: GranuleSpec, base_url: str) -> None:
    """Write ``spec``'s files at the bucket paths of ``granule`` (a search result), under
    ``root``, which a range server serves as ``base_url``."""
    write_files(root, replace(spec, baseline=granule.baseline or spec.baseline),
                relative_paths(granule, base_url))  # fmt: skip


@dataclass(frozen=True)
class DemSpec:
    """A DEM tile: lon/lat bounds, pixel size in degrees, elevation = a + b·lon + c·lat."""

    item_id: str
    bounds: tuple[float, float, float, float]
    res_deg: float = 1 / 1200
    product: str = "GLO-30"
    coefficients: tuple[float, float, float] = (1000.0, 0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)


def write_dem(path: Path, spec: DemSpec) -> None:
    """A float32 COG of ``spec``'s plane in EPSG:4326 (pixel-centre elevations)."""
    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.io import MemoryFile

    west, south, east, north = spec.bounds
    width = round((east - west) / spec.res_deg)
    height = round((north - south) / spec.res_deg)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = west + cols * spec.res_deg, north - rows * spec.res_deg
    a, b, c = spec.coefficients
    data = (a + b * lon + c * lat).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
               "dtype": "float32", "crs": "EPSG:4326",
               "transform": Affine(spec.res_deg, 0, west, 0, -spec.res_deg, north)}  # fmt: skip
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(data, 1)
        with memory.open() as src:
            rasterio.shutil.copy(src, path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256)


def dem_tile(path: Path, spec: DemSpec) -> DemTile:
    """Write the tile at ``path`` and return its record (local href)."""
    write_dem(path, spec)
    west, south, east, north = spec.bounds
    ring = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    return DemTile(item_id=spec.item_id, href=str(path), product=spec.product,  # type: ignore[arg-type]
                   footprint={"type": "Polygon", "coordinates": [ring]})  # fmt: skip


def utm_box(epsg: int, left: float, top: float, size_m: float) -> Sequence[float]:
    """The lon/lat bbox (W,S,E,N) of a square of ``size_m`` metres below-right of a UTM point."""
    from rasterio.warp import transform_bounds

    return transform_bounds(f"EPSG:{epsg}", "EPSG:4326", left, top - size_m, left + size_m, top)
