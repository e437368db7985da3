"""Seeded synthetic glacier scenes: the inputs of ``glaviz features`` and a reference mask.

Nothing here downloads anything: every array comes from a seeded numpy generator, so the same
seed gives the same bytes on every machine. :func:`make_scene` writes ``optical.tif``,
``elevation.tif`` and the reference mask ``truth.tif``, georeferenced in a real projected CRS.

The scenes are built to be *learnable*: glaciers sit where the terrain is high (an equilibrium
line at a quantile of the elevation, perturbed by smooth noise) and their spectrum is the one
snow and ice have at the top of the atmosphere — bright in the visible and near infrared, dark in
the shortwave infrared — so a small GlaViTU can reach IoU > 0.9 from optical and DEM data. A
little debris-covered ice (rock-like spectrum on the lower glacier), vegetation, lakes, terrain
shading and sensor noise keep the task from being a threshold on one band.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glaviz.errors import ConfigError
from glaviz.runs.outputs import refuse_existing

#: TOA reflectance of each surface in the six optical bands (blue, green, red, NIR, SWIR1,
#: SWIR2). Values follow typical Sentinel-2 / Landsat top-of-atmosphere spectra.
SPECTRA: dict[str, tuple[float, ...]] = {
    "snow": (0.86, 0.83, 0.79, 0.66, 0.09, 0.07),
    "ice": (0.52, 0.49, 0.44, 0.30, 0.05, 0.04),
    "debris": (0.15, 0.16, 0.18, 0.23, 0.21, 0.17),
    "rock": (0.12, 0.14, 0.17, 0.25, 0.31, 0.26),
    "vegetation": (0.05, 0.08, 0.05, 0.38, 0.21, 0.11),
    "water": (0.09, 0.08, 0.06, 0.03, 0.012, 0.009),
}

#: Optical band names, in stack order.
OPTICAL_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")


@dataclass(frozen=True)
class RegionStyle:
    """How scenes of one benchmark region look: location, terrain and surface mix."""

    lat: float  #: centre latitude of the region's tiles (degrees)
    lon: float  #: centre longitude (degrees)
    base: float  #: lowest elevation (m)
    relief: float  #: elevation range of a 20 km scene (m); smaller scenes get less
    glacier: float  #: target glacier fraction of the scene
    debris: float  #: fraction of the glacier covered by debris (lower glacier only)
    vegetation: float  #: fraction of the scene (lowest terrain) covered by vegetation
    water: float  #: fraction of the scene covered by lakes
    brightness: float = 1.0  #: overall illumination (sun elevation, atmosphere)


#: One style per benchmark region. Figures are plausible, not measured.
REGION_STYLES: dict[str, RegionStyle] = {
    "ALP": RegionStyle(46.4, 9.9, 1300, 2600, 0.25, 0.06, 0.25, 0.02),
    "AN": RegionStyle(-66.5, -64.0, 0, 1800, 0.55, 0.01, 0.0, 0.02, 1.05),
    "AWA": RegionStyle(61.0, -141.0, 300, 3000, 0.40, 0.08, 0.15, 0.02),
    "CA": RegionStyle(43.0, 77.5, 2600, 2400, 0.25, 0.10, 0.15, 0.02),
    "GR": RegionStyle(71.5, -52.0, 0, 1800, 0.40, 0.03, 0.05, 0.03, 1.02),
    "HMA": RegionStyle(30.5, 85.0, 3800, 3500, 0.30, 0.15, 0.05, 0.02, 0.97),
    "LL": RegionStyle(-9.5, -77.5, 3500, 2500, 0.20, 0.04, 0.20, 0.02),
    "NZ": RegionStyle(-43.5, 170.3, 500, 2500, 0.25, 0.08, 0.30, 0.02),
    "SA": RegionStyle(-49.0, -73.2, 200, 2500, 0.35, 0.05, 0.25, 0.03),
    "SC": RegionStyle(61.7, 7.5, 400, 1700, 0.25, 0.02, 0.30, 0.03),
    "SVAL": RegionStyle(78.7, 16.0, 0, 1100, 0.50, 0.03, 0.0, 0.03, 0.95),
}

_METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class SceneArrays:
    """A synthetic scene in memory: physical units, rows × columns."""

    optical: np.ndarray  #: (H, W, 6) float32 TOA reflectance, NaN where invalid
    elevation: np.ndarray  #: (H, W) float32 metres
    glacier: np.ndarray  #: (H, W) bool reference mask
    valid: np.ndarray  #: (H, W) bool, False where the optical bands are NaN


@dataclass(frozen=True)
class SceneFiles:
    """Paths written by :func:`make_scene`."""

    directory: Path
    optical: Path
    elevation: Path
    truth: Path


# --------------------------------------------------------------------------------------------------
# Scene synthesis (numpy only)


def fractal_noise(shape: tuple[int, int], rng: np.random.Generator, beta: float) -> np.ndarray:
    """Spectral-synthesis noise with power ∝ 1/f**beta, scaled to [0, 1] (float64).

    One FFT, so a 2000 × 2000 field takes well under a second; larger ``beta`` = smoother.
    """
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    amplitude = f ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    spectrum = amplitude * (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape))
    field = np.fft.irfft2(spectrum, s=(h, w))
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo) if hi > lo else np.zeros(shape)


def synthesize_scene(
    size: tuple[int, int],
    *,
    seed: int = 0,
    resolution: float = 10.0,
    style: RegionStyle | str = "ALP",
    nan_fraction: float = 2e-4,
) -> SceneArrays:
    """Build one synthetic scene: terrain, glacier mask and the optical bands it implies.

    ``style`` is a :class:`RegionStyle` or a benchmark region name. ``nan_fraction`` sets how
    many pixels (in small 2 × 2 clusters) have NaN optical values, as clouds masked by a provider
    or sensor gaps would.
    """
    if isinstance(style, str):
        if style not in REGION_STYLES:
            raise ConfigError(f"unknown region {style!r}; use one of {', '.join(REGION_STYLES)}")
        style = REGION_STYLES[style]
    h, w = (int(size[0]), int(size[1]))
    if h < 8 or w < 8:
        raise ConfigError(f"scene size must be at least 8 × 8 pixels, got {h} × {w}")
    rng = np.random.default_rng(seed)
    # The stages draw from ``rng`` in this order; reordering them changes every sample scene.
    terrain = _terrain((h, w), rng, style, resolution)
    surfaces = _surfaces(terrain, rng, style)
    optical = _optical(terrain, surfaces, rng, style, resolution)
    valid = _sensor_gaps(optical, rng, nan_fraction)
    return SceneArrays(
        optical=optical,
        elevation=terrain.elevation.astype(np.float32),
        glacier=terrain.glacier,
        valid=valid,
    )


@dataclass(frozen=True)
class _Terrain:
    """Elevation and the glacier mask it implies, with the fields later stages reuse."""

    elevation: np.ndarray  #: metres, float64
    slope: np.ndarray  #: degrees, float64
    glacier: np.ndarray  #: bool
    score: np.ndarray  #: smooth elevation + wobble: what the equilibrium line cuts
    wobble: np.ndarray  #: the smooth perturbation of the equilibrium line
    ela: float  #: the equilibrium line altitude on ``score``
    relief: float  #: elevation range of this scene (m)


def _terrain(
    shape: tuple[int, int], rng: np.random.Generator, style: RegionStyle, resolution: float
) -> _Terrain:
    """Fractal terrain and the glaciers above a perturbed equilibrium line."""
    from scipy import ndimage

    from glaviz.features.slope import slope_degrees

    h, w = shape
    # A smooth fractal surface plus finer roughness. Relief shrinks with the extent so that small
    # tiles do not become cliffs.
    extent_km = max(h, w) * resolution / 1000.0
    relief = style.relief * float(np.clip(extent_km / 20.0, 0.12, 1.0)) ** 0.7
    smooth = style.base + relief * 0.85 * fractal_noise((h, w), rng, 3.6)
    rough = relief * 0.15 * fractal_noise((h, w), rng, 2.4)

    # Glaciers: above an equilibrium line chosen as an elevation quantile, perturbed by smooth
    # noise (aspect, snow drift).
    # Opening then closing removes single-pixel specks and holes, which real outlines lack.
    wobble = (fractal_noise((h, w), rng, 3.0) - 0.5) * 0.25 * relief
    score = smooth + wobble
    ela = float(np.quantile(score, 1.0 - style.glacier))
    disc = ndimage.generate_binary_structure(2, 1)
    glacier = ndimage.binary_opening(score > ela, disc, iterations=2)
    glacier = ndimage.binary_closing(glacier, disc, iterations=2, border_value=1) & (score > ela)

    # Ice smooths the surface it covers: damp the small-scale roughness on glaciers.
    elevation = smooth + rough * np.where(glacier, 0.25, 1.0)
    elevation = elevation - rough.mean()
    slope = slope_degrees(elevation, xres=resolution, yres=resolution).astype(np.float64)
    return _Terrain(elevation, slope, glacier, score, wobble, ela, relief)


@dataclass(frozen=True)
class _Surfaces:
    """Which surface covers each pixel (masks), and how snowy the glacier is (0…1)."""

    snowiness: np.ndarray
    debris: np.ndarray
    vegetation: np.ndarray
    water: np.ndarray


def _surfaces(terrain: _Terrain, rng: np.random.Generator, style: RegionStyle) -> _Surfaces:
    """Snow high on the glacier, bare ice lower, debris on part of the lowest ice; vegetation
    on the lowest land and lakes on flat land."""
    t = terrain
    shape = t.elevation.shape
    snowline = np.quantile(t.score[t.glacier], 0.45) if t.glacier.any() else t.ela
    snowiness = np.clip((t.score - snowline) / (0.08 * t.relief) + 0.5, 0.0, 1.0)
    debris_field = fractal_noise(shape, rng, 3.0)
    low = t.score < t.ela + 0.6 * (snowline - t.ela)
    share = min(1.0, 2.5 * style.debris)
    debris = t.glacier & low & (debris_field > np.quantile(debris_field, 1.0 - share))
    land = ~t.glacier
    veg_line = np.quantile(t.elevation, style.vegetation) if style.vegetation > 0 else -np.inf
    vegetation = land & (t.elevation + 0.3 * t.wobble < veg_line)
    lake_field = fractal_noise(shape, rng, 3.2)
    water = land & ~vegetation & (lake_field > np.quantile(lake_field, 1.0 - style.water))
    water &= t.slope < 20.0
    return _Surfaces(snowiness, debris, vegetation, water)


def _optical(
    terrain: _Terrain,
    surfaces: _Surfaces,
    rng: np.random.Generator,
    style: RegionStyle,
    resolution: float,
) -> np.ndarray:
    """TOA reflectance (H, W, 6) float32: surface spectra, terrain shading, texture, noise."""
    h, w = terrain.elevation.shape
    spectra = {k: np.asarray(v, dtype=np.float64) for k, v in SPECTRA.items()}
    optical = np.broadcast_to(spectra["rock"], (h, w, 6)).copy()
    snowy = surfaces.snowiness[..., None]
    ice_mix = snowy * spectra["snow"] + (1 - snowy) * spectra["ice"]
    optical[terrain.glacier] = ice_mix[terrain.glacier]
    optical[surfaces.debris] = spectra["debris"]
    optical[surfaces.vegetation] = spectra["vegetation"]
    optical[surfaces.water] = spectra["water"]

    # Terrain shading (sun from the south-east, 40° above the horizon) and surface texture.
    dy, dx = np.gradient(terrain.elevation, resolution)
    slope_rad = np.arctan(np.hypot(dx, dy))
    aspect = np.arctan2(-dx, dy)
    zenith, azimuth = math.radians(50.0), math.radians(135.0)
    shade = math.cos(zenith) * np.cos(slope_rad) + math.sin(zenith) * np.sin(slope_rad) * np.cos(
        azimuth - aspect
    )
    illumination = style.brightness * np.clip(0.55 + 0.6 * shade, 0.35, 1.25)
    texture = 1.0 + 0.12 * (fractal_noise((h, w), rng, 1.6) - 0.5)
    optical *= (illumination * texture)[..., None]
    optical += rng.normal(0.0, 0.008, optical.shape)
    return np.clip(optical, 0.0, 1.6).astype(np.float32)


def _sensor_gaps(optical: np.ndarray, rng: np.random.Generator, nan_fraction: float) -> np.ndarray:
    """Set small 2 × 2 clusters of ``optical`` to NaN (in place); the valid mask."""
    h, w = optical.shape[:2]
    valid = np.ones((h, w), dtype=bool)
    clusters = round(nan_fraction * h * w / 4)
    if clusters:
        rows = rng.integers(0, h - 1, clusters)
        cols = rng.integers(0, w - 1, clusters)
        for dr in (0, 1):
            for dc in (0, 1):
                valid[rows + dr, cols + dc] = False
        optical[~valid] = np.nan
    return valid


# --------------------------------------------------------------------------------------------------
# GeoTIFF scene


def make_scene(
    directory: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (512, 512),
    seed: int = 0,
    crs: str = "EPSG:32632",
    resolution: float = 10.0,
    region: str = "ALP",
    overwrite: bool = True,
) -> SceneFiles:
    """Write ``optical.tif``, ``elevation.tif`` and ``truth.tif`` for one synthetic scene.

    - ``optical.tif``: 6 float32 bands of TOA reflectance (blue … SWIR2), NaN where invalid;
    - ``elevation.tif``: float32 metres;
    - ``truth.tif``: uint8 glacier mask (1 glacier, 0 not), 255 (the declared nodata) where the
      optical data are invalid, matching where ``glaviz deploy`` writes nodata.

    The grid's upper-left corner is at (400 000, 5 100 000) in ``crs`` (a UTM zone over the Alps
    by default) with square pixels of ``resolution`` metres. Files are tiled and compressed so
    that ``glaviz features`` can stream them like real scenes.
    """
    import rasterio
    from rasterio.transform import from_origin

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = SceneFiles(
        directory=directory,
        optical=directory / "optical.tif",
        elevation=directory / "elevation.tif",
        truth=directory / "truth.tif",
    )
    for path in (files.optical, files.elevation, files.truth):
        refuse_existing(path, overwrite=overwrite)
    scene = synthesize_scene(size, seed=seed, resolution=resolution, style=region)
    h, w = scene.elevation.shape
    profile = {
        "driver": "GTiff",
        "height": h,
        "width": w,
        "crs": crs,
        "transform": from_origin(400_000.0, 5_100_000.0, resolution, resolution),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    truth = np.where(scene.valid, scene.glacier.astype(np.uint8), np.uint8(255))
    outputs: list[tuple[Path, np.ndarray, dict[str, object], tuple[str, ...]]] = [
        (
            files.optical,
            np.moveaxis(scene.optical, -1, 0),
            {"dtype": "float32", "count": 6, "predictor": 3},
            OPTICAL_BANDS,
        ),
        (
            files.elevation,
            scene.elevation[None],
            {"dtype": "float32", "count": 1, "predictor": 3},
            ("elevation",),
        ),
        (files.truth, truth[None], {"dtype": "uint8", "count": 1, "nodata": 255}, ("glacier",)),
    ]
    for path, data, extra, names in outputs:
        tmp = path.with_name(f".{path.name}.part")
        try:
            with rasterio.open(tmp, "w", **profile, **extra) as dst:
                dst.write(data)
                for i, name in enumerate(names, start=1):
                    dst.set_band_description(i, name)
                dst.update_tags(source=f"glaviz.samples.make_scene(seed={seed}, region={region})")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return files
