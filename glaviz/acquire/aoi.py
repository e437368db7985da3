"""The area of interest: ``--bbox`` or ``--aoi FILE`` → lon/lat bounds and geometry, its area
against the size limit, and the UTM zone of its centre.

An AOI file may be GeoJSON (read here, RFC 7946 coordinates are lon/lat) or anything geopandas
reads (GeoPackage, shapefile, …, reprojected to lon/lat). Catalogues are searched with the AOI's
bounding box, and the output grid covers that box, so the area limit applies to the box: that is
what is downloaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glaviz.config.acquire import AcquireConfig, check_bbox
from glaviz.errors import ConfigError, InputError

Bbox = tuple[float, float, float, float]

#: Largest AOI (its bounding box) acquired without ``--allow-large``: a little more than one
#: Sentinel-2 tile (110 km × 110 km = 12,100 km²), whose six bands are about a gigabyte of JP2.
MAX_AREA_KM2 = 15_000.0
#: Radius of the sphere with the WGS84 ellipsoid's area (authalic radius), in km.
EARTH_RADIUS_KM = 6371.0072
_GEOJSON_SUFFIXES = (".geojson", ".json")


@dataclass(frozen=True)
class Aoi:
    """An area of interest in lon/lat (WGS84): its bounds, its shape and where it came from."""

    bbox: Bbox
    geometry: dict[str, Any]
    origin: str

    @property
    def centre(self) -> tuple[float, float]:
        """(lon, lat) of the bounding box's centre."""
        west, south, east, north = self.bbox
        return (west + east) / 2, (south + north) / 2

    @property
    def area_km2(self) -> float:
        """Area of the bounding box on the authalic sphere."""
        return bbox_area_km2(self.bbox)


def bbox_area_km2(bbox: Bbox) -> float:
    """Area of a lon/lat box: R² · Δλ · (sin φ₂ − sin φ₁), exact on the sphere."""
    west, south, east, north = bbox
    dlon = math.radians(east - west)
    return (
        EARTH_RADIUS_KM**2 * dlon * (math.sin(math.radians(north)) - math.sin(math.radians(south)))
    )


def bbox_polygon(bbox: Bbox) -> dict[str, Any]:
    """A GeoJSON polygon of the box, counter-clockwise."""
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone holding (lon, lat): 326zz north of the equator, 327zz south.

    Plain 6° zones: the Norway and Svalbard exceptions of MGRS are not applied, since any UTM
    zone near the AOI is a good grid for it and the plain rule is the one users can check.
    """
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + max(zone, 1)


def check_area(aoi: Aoi, *, allow_large: bool) -> None:
    """Refuse an AOI above :data:`MAX_AREA_KM2` unless ``allow_large``."""
    if allow_large or aoi.area_km2 <= MAX_AREA_KM2:
        return
    raise ConfigError(
        f"the AOI's bounding box {format_bbox(aoi.bbox)} covers {aoi.area_km2:,.0f} km², above "
        f"the limit of {MAX_AREA_KM2:,.0f} km² (about one Sentinel-2 tile); pass --allow-large "
        "to acquire it anyway, or give a smaller --bbox/--aoi"
    )


def format_bbox(bbox: Bbox) -> str:
    """``W,S,E,N`` as the ``--bbox`` option writes it."""
    return ",".join(f"{v:g}" for v in bbox)


def aoi_from_config(config: AcquireConfig) -> Aoi:
    """The AOI of a run, with its area checked against the limit."""
    if config.bbox is not None:
        aoi = Aoi(bbox=config.bbox, geometry=bbox_polygon(config.bbox), origin="--bbox")
    elif config.aoi is not None:
        aoi = read_aoi(config.aoi)
    else:  # AcquireConfig guarantees one of them
        raise ConfigError("give an area of interest: --bbox W,S,E,N or --aoi FILE")
    check_area(aoi, allow_large=config.allow_large)
    return aoi


def read_aoi(path: Path) -> Aoi:
    """An AOI file → its polygons (merged) in lon/lat; one :class:`InputError` for each way a
    file can fail (missing, unreadable, no polygon, coordinates that are not degrees)."""
    if not path.is_file():
        raise InputError(f"AOI file {path} does not exist; give an existing --aoi FILE")
    if path.suffix.lower() in _GEOJSON_SUFFIXES:
        geometries = _geojson_geometries(path)
    else:
        geometries = _vector_geometries(path)
    polygons = [g for g in geometries if g.get("type") in ("Polygon", "MultiPolygon")]
    if not polygons:
        raise InputError(
            f"AOI file {path} holds no polygon (found: "
            f"{', '.join(sorted({str(g.get('type')) for g in geometries})) or 'nothing'}); give "
            "a file with the area's outline, or use --bbox W,S,E,N"
        )
    geometry = polygons[0] if len(polygons) == 1 else _multipolygon(polygons)
    bbox = _geometry_bounds(geometry)
    try:
        check_bbox(bbox)
    except ValueError as exc:
        raise InputError(
            f"AOI file {path}: {exc}; its coordinates must be longitude/latitude degrees "
            "(GeoJSON is always lon/lat; reproject other files to EPSG:4326 or give a CRS)"
        ) from None
    return Aoi(bbox=bbox, geometry=geometry, origin=str(path))


def _geojson_geometries(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read AOI file {path} as GeoJSON ({exc}); fix the file") from None
    if not isinstance(data, dict):
        raise InputError(f"AOI file {path} is not a GeoJSON object; fix the file")
    if data.get("type") == "FeatureCollection":
        return [f.get("geometry") or {} for f in data.get("features", [])]
    if data.get("type") == "Feature":
        return [data.get("geometry") or {}]
    if data.get("type") == "GeometryCollection":
        return list(data.get("geometries", []))
    return [data]


def _vector_geometries(path: Path) -> list[dict[str, Any]]:
    import geopandas

    try:
        frame = geopandas.read_file(path)
    except Exception as exc:  # pyogrio/fiona raise their own types for every kind of bad file
        raise InputError(
            f"cannot read AOI file {path} ({exc}); give a GeoJSON, GeoPackage or shapefile"
        ) from None
    if frame.crs is not None and not frame.crs.equals("EPSG:4326"):
        frame = frame.to_crs("EPSG:4326")
    return [geom.__geo_interface__ for geom in frame.geometry if geom is not None]


def _multipolygon(polygons: list[dict[str, Any]]) -> dict[str, Any]:
    parts: list[Any] = []
    for geometry in polygons:
        coords = geometry["coordinates"]
        parts.extend([coords] if geometry["type"] == "Polygon" else coords)
    return {"type": "MultiPolygon", "coordinates": parts}


def _geometry_bounds(geometry: dict[str, Any]) -> Bbox:
    xs: list[float] = []
    ys: list[float] = []

    def walk(value: Any) -> None:
        if value and isinstance(value[0], int | float):
            xs.append(float(value[0]))
            ys.append(float(value[1]))
        else:
            for part in value:
                walk(part)

    walk(geometry["coordinates"])
    return min(xs), min(ys), max(xs), max(ys)
