"""Seeded synthetic glacier scenes and benchmark files, for tests, docs and the demo model.

Nothing here downloads anything: every array comes from a seeded numpy generator, so the same
seed gives the same bytes on every machine. Two products:

* :func:`make_scene` writes the inputs of ``glaviz features`` (``optical.tif``, ``elevation.tif``)
  plus the reference mask ``truth.tif``, georeferenced in a real projected CRS;
* :func:`make_benchmark` writes an HDF5 file in the published benchmark layout (one group per
  tile, normalised and padded features, one-hot ``outlines``), which ``glaviz train`` and
  ``glaviz predict`` read (see :mod:`glaviz.datasets` and ``docs/samples.md``).

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from glaviz.atomic import atomic_path
from glaviz.errors import ConfigError, OutputExistsError
from glaviz.groups import REGIONS

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
    from scipy import ndimage

    from glaviz.features.slope import slope_degrees

    if isinstance(style, str):
        if style not in REGION_STYLES:
            raise ConfigError(f"unknown region {style!r}; use one of {', '.join(REGION_STYLES)}")
        style = REGION_STYLES[style]
    h, w = (int(size[0]), int(size[1]))
    if h < 8 or w < 8:
        raise ConfigError(f"scene size must be at least 8 × 8 pixels, got {h} × {w}")
    rng = np.random.default_rng(seed)

    # Terrain: a smooth fractal surface plus finer roughness. Relief shrinks with the extent so
    # that small tiles do not become cliffs.
    extent_km = max(h, w) * resolution / 1000.0
    relief = style.relief * float(np.clip(extent_km / 20.0, 0.12, 1.0)) ** 0.7
    smooth = style.base + relief * 0.85 * fractal_noise((h, w), rng, 3.6)
    rough = relief * 0.15 * fractal_noise((h, w), rng, 2.4)

    # Glaciers: above an equilibrium line chosen as an elevation quantile, perturbed by smooth
    # noise (aspect, snow drift).
    # Opening then closing removes single-pixel specks and holes, which real outlines lack.
    wobble = (fractal_noise((h, w), rng, 3.0) - 0.5) * 0.25 * relief
    score = smooth + wobble
    ela = np.quantile(score, 1.0 - style.glacier)
    disc = ndimage.generate_binary_structure(2, 1)
    glacier = ndimage.binary_opening(score > ela, disc, iterations=2)
    glacier = ndimage.binary_closing(glacier, disc, iterations=2, border_value=1) & (score > ela)

    # Ice smooths the surface it covers: damp the small-scale roughness on glaciers.
    elevation = smooth + rough * np.where(glacier, 0.25, 1.0)
    elevation = elevation - rough.mean()
    slope = slope_degrees(elevation, xres=resolution, yres=resolution).astype(np.float64)

    # Surfaces: snow high on the glacier, bare ice lower, debris on part of the lowest ice.
    snowline = np.quantile(score[glacier], 0.45) if glacier.any() else ela
    snowiness = np.clip((score - snowline) / (0.08 * relief) + 0.5, 0.0, 1.0)
    debris_field = fractal_noise((h, w), rng, 3.0)
    low = score < ela + 0.6 * (snowline - ela)
    share = min(1.0, 2.5 * style.debris)
    debris = glacier & low & (debris_field > np.quantile(debris_field, 1.0 - share))
    land = ~glacier
    veg_line = np.quantile(elevation, style.vegetation) if style.vegetation > 0 else -np.inf
    vegetation = land & (elevation + 0.3 * wobble < veg_line)
    lake_field = fractal_noise((h, w), rng, 3.2)
    water = land & ~vegetation & (lake_field > np.quantile(lake_field, 1.0 - style.water))
    water &= slope < 20.0

    spectra = {k: np.asarray(v, dtype=np.float64) for k, v in SPECTRA.items()}
    optical = np.broadcast_to(spectra["rock"], (h, w, 6)).copy()
    ice_mix = snowiness[..., None] * spectra["snow"] + (1 - snowiness[..., None]) * spectra["ice"]
    optical[glacier] = ice_mix[glacier]
    optical[debris] = spectra["debris"]
    optical[vegetation] = spectra["vegetation"]
    optical[water] = spectra["water"]

    # Terrain shading (sun from the south-east, 40° above the horizon) and surface texture.
    dy, dx = np.gradient(elevation, resolution)
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
    optical = np.clip(optical, 0.0, 1.6).astype(np.float32)

    valid = np.ones((h, w), dtype=bool)
    clusters = round(nan_fraction * h * w / 4)
    if clusters:
        rows = rng.integers(0, h - 1, clusters)
        cols = rng.integers(0, w - 1, clusters)
        for dr in (0, 1):
            for dc in (0, 1):
                valid[rows + dr, cols + dc] = False
        optical[~valid] = np.nan

    return SceneArrays(
        optical=optical,
        elevation=elevation.astype(np.float32),
        glacier=glacier,
        valid=valid,
    )


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
    if not overwrite:
        for path in (files.optical, files.elevation, files.truth):
            if path.exists():
                raise OutputExistsError(f"{path} exists; remove it or choose another folder")
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


# --------------------------------------------------------------------------------------------------
# Benchmark HDF5


def padded_size(size: int, patch_size: int) -> int:
    """Stored size of a tile side: ``patch * (size // patch + 1)``, the published rule."""
    return patch_size * (size // patch_size + 1)


def make_benchmark(
    path: str | os.PathLike[str],
    *,
    tiles: int = 4,
    tile_size: int | tuple[int, int] = 96,
    patch_size: int = 32,
    regions: Sequence[str] = ("ALP", "HMA"),
    subregions_per_region: int = 2,
    seed: int = 0,
    resolution: float = 10.0,
    groups: Sequence[str] = ("optical", "dem"),
    overwrite: bool = True,
    layout: Literal["glaviz", "published"] = "glaviz",
) -> Path:
    """Write a synthetic benchmark split in the published HDF5 layout; return its path.

    ``tiles`` tiles are spread over ``regions`` in turn; each is a fresh scene from
    :func:`synthesize_scene` in that region's style, ``tile_size`` pixels (rows, columns) before
    padding. Every tile group holds

    - ``optical`` (H, W, 6), ``dem`` (H, W, 2: elevation, slope in degrees) — float32, normalised
      with the published statistics (:func:`glaviz.pipeline.normalise_group`); other groups named
      in ``groups`` (e.g. ``thermal``) get plausible constant-ish values, for tests;
    - ``outlines`` (H, W, 2) float32 one-hot, channel 1 = glacier;
    - attributes ``height``/``width`` (stored size), ``region``, ``subregion`` (``ALP-1`` …),
      ``padding_height``/``padding_width``, ``original_height``/``original_width`` and the
      lon/lat bounds ``xmin``, ``xmax``, ``ymin``, ``ymax`` of the unpadded tile.

    Tiles are stored padded, as published: zero-padded (the normalised minimum) and centred to
    ``patch * (size // patch + 1)`` per side, so the published window loop (stride patch / 2)
    covers every stored pixel. The padding is the same on both sides, which needs an even
    difference; odd tile sizes are refused. Padding pixels are labelled non-glacier.

    ``layout="published"`` writes exactly what the published files hold instead (read from their
    HDF5 metadata; see ``docs/datasets.md``): every dataset float64, contiguous, uncompressed,
    fill value 0.0; ``(stored - original) // 2`` padding above/left and the rest below/right,
    so odd tile sides are allowed; padding labelled ``(0, 0)`` (the fill); a uint8
    ``bright_dark_outlines`` (H, W, 3) one-hot of non-glacier / clean ice / debris-covered ice;
    and ``epsg`` (4326) and ``tile_name`` attributes. Pass ``patch_size=384`` for the published
    stored sizes; smaller patches give smaller files with the same structure.
    """
    import h5py

    from glaviz.features.slope import slope_degrees
    from glaviz.groups import GROUP_BANDS
    from glaviz.pipeline import normalise_group

    th, tw = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
    if tiles < 1:
        raise ConfigError(f"tiles must be at least 1, got {tiles}")
    if patch_size < 2 or patch_size % 2:
        raise ConfigError(f"patch_size must be an even number >= 2, got {patch_size}")
    if layout not in ("glaviz", "published"):
        raise ConfigError(f"layout must be 'glaviz' or 'published', got {layout!r}")
    published = layout == "published"
    for side in (th, tw):
        if side < 8 or (side % 2 and not published):
            raise ConfigError(
                f"tile sides must be even and at least 8 (so the padding is symmetric), got {side}"
            )
    unknown = [r for r in regions if r not in REGION_STYLES]
    if unknown or not regions:
        raise ConfigError(f"unknown regions {unknown}; use names from {', '.join(REGIONS)}")
    bad = [g for g in groups if g not in GROUP_BANDS]
    if bad or "optical" not in groups:
        raise ConfigError(f"groups must include optical and come from {', '.join(GROUP_BANDS)}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; remove it or choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)

    sh, sw = padded_size(th, patch_size), padded_size(tw, patch_size)
    ph, pw = (sh - th) // 2, (sw - tw) // 2
    rng = np.random.default_rng(seed)
    counters = dict.fromkeys(regions, 0)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["source"] = f"glaviz.samples.make_benchmark(seed={seed})"
        for index in range(tiles):
            region = regions[index % len(regions)]
            k = counters[region]
            counters[region] += 1
            style = REGION_STYLES[region]
            scene = synthesize_scene(
                (th, tw),
                seed=int(rng.integers(0, 2**31 - 1)),
                resolution=resolution,
                style=style,
            )
            slope = slope_degrees(scene.elevation, xres=resolution, yres=resolution)
            physical: dict[str, np.ndarray] = {
                "optical": scene.optical,
                "dem": np.stack([scene.elevation, slope], axis=-1),
            }
            for group in groups:
                if group not in physical:
                    physical[group] = _extra_group(group, scene, rng)
            row, col = 10 + 3 * k, 20 + 2 * k
            name = f"{region}-{row}-{col}"
            g = f.create_group(name)
            onehot = np.stack([~scene.glacier, scene.glacier], axis=-1).astype(np.float32)
            arrays = {g_: normalise_group(g_, physical[g_]) for g_ in groups}
            arrays["outlines"] = onehot
            if published:
                arrays["bright_dark_outlines"] = _bright_dark(scene)
            for key, data in arrays.items():
                padded = _pad(data, ph, pw, sh, sw)
                if key == "outlines" and not published:
                    padded[..., 0] = 1.0 - padded[..., 1]  # glaviz labels padding non-glacier
                if published:
                    # The published layout: float64 (uint8 for bright_dark_outlines), contiguous,
                    # uncompressed, fill value 0.
                    dtype = np.uint8 if key == "bright_dark_outlines" else np.float64
                    g.create_dataset(key, data=padded.astype(dtype), fillvalue=dtype(0))
                else:
                    chunks = (min(patch_size, sh), min(patch_size, sw), data.shape[-1])
                    g.create_dataset(key, data=padded, chunks=chunks)
            lat_span = th * resolution / _METRES_PER_DEGREE
            lon_span = tw * resolution / (_METRES_PER_DEGREE * math.cos(math.radians(style.lat)))
            ymax = style.lat + (20 - row) * lat_span
            xmin = style.lon + (col - 20) * lon_span
            if published:
                g.attrs.update({"epsg": 4326, "tile_name": name})
            g.attrs.update(
                {
                    "height": sh,
                    "width": sw,
                    "region": region,
                    "subregion": f"{region}-{1 + k % max(1, subregions_per_region)}",
                    "padding_height": ph,
                    "padding_width": pw,
                    "original_height": th,
                    "original_width": tw,
                    "xmin": xmin,
                    "xmax": xmin + lon_span,
                    "ymin": ymax - lat_span,
                    "ymax": ymax,
                }
            )
    return path


def make_benchmark_splits(
    directory: str | os.PathLike[str],
    *,
    tiles: tuple[int, int, int] = (8, 2, 2),
    seed: int = 0,
    names: str = "samples",
    **kwargs: object,
) -> dict[str, Path]:
    """Write the train, val and test splits with disjoint seeds; return their paths.

    ``names`` picks the file names from :data:`glaviz.datasets.SPLIT_FILE_NAMES`: ``samples``
    (``train.h5`` …), ``demo`` (``gsgm_train_DEMO.hdf5`` …) or ``benchmark``
    (``20230905_train_global_ps384.hdf5`` …). ``kwargs`` go to :func:`make_benchmark`
    (``tile_size``, ``patch_size``, ``regions``, ``layout`` …).
    """
    from glaviz.datasets import SPLIT_FILE_NAMES

    if names not in SPLIT_FILE_NAMES:
        raise ConfigError(f"names must be one of {', '.join(SPLIT_FILE_NAMES)}, got {names!r}")
    directory = Path(directory)
    out: dict[str, Path] = {}
    for offset, (split, count) in enumerate(zip(("train", "val", "test"), tiles, strict=True)):
        out[split] = make_benchmark(
            directory / SPLIT_FILE_NAMES[names].format(split=split),
            tiles=count,
            seed=seed * 1000 + offset,
            **kwargs,  # type: ignore[arg-type]
        )
    return out


def _pad(data: np.ndarray, ph: int, pw: int, sh: int, sw: int) -> np.ndarray:
    """Zero-pad ``data`` to ``sh × sw``: ``ph``/``pw`` above/left, the rest below/right."""
    h, w = data.shape[:2]
    return np.pad(data, ((ph, sh - h - ph), (pw, sw - w - pw), (0, 0)))


def _bright_dark(scene: SceneArrays) -> np.ndarray:
    """One-hot non-glacier / clean (bright) ice / debris-covered (dark) ice, uint8 (H, W, 3)."""
    bright = scene.glacier & (np.nan_to_num(scene.optical[..., 0]) > 0.3)
    dark = scene.glacier & ~bright
    return np.stack([~scene.glacier, bright, dark], axis=-1).astype(np.uint8)


def _extra_group(group: str, scene: SceneArrays, rng: np.random.Generator) -> np.ndarray:
    """Plausible physical values for the optional groups, for tests that need them."""
    h, w = scene.elevation.shape
    glacier = scene.glacier[..., None].astype(np.float64)
    if group in ("co_pol_sar", "cross_pol_sar"):
        base = 0.05 + 0.15 * glacier
        return (base * rng.uniform(0.7, 1.3, (h, w, 2))).astype(np.float32)
    if group == "in_sar":
        return np.clip(0.8 - 0.5 * glacier + rng.normal(0, 0.05, (h, w, 2)), 0, 1).astype(
            np.float32
        )
    # thermal: colder on ice
    return (285.0 - 15.0 * glacier + rng.normal(0, 1.0, (h, w, 1))).astype(np.float32)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m glaviz.samples scene DIR`` / ``benchmark DIR``: write sample data.

    A developer entry point for ``make demo`` and for producing the demo model's training data
    (``configs/demo.toml``); not part of the ``glaviz`` command contract.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m glaviz.samples", description=main.__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    scene = sub.add_parser("scene", help="optical.tif, elevation.tif, truth.tif")
    scene.add_argument("directory", type=Path)
    scene.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    scene.add_argument("--seed", type=int, default=0)
    scene.add_argument("--region", default="ALP", choices=sorted(REGION_STYLES))
    bench = sub.add_parser("benchmark", help="train.h5, val.h5, test.h5")
    bench.add_argument("directory", type=Path)
    bench.add_argument(
        "--tiles", type=int, nargs=3, default=(8, 2, 2), metavar=("TRAIN", "VAL", "TEST")
    )
    bench.add_argument("--tile-size", type=int, default=96)
    bench.add_argument("--patch-size", type=int, default=32)
    bench.add_argument(
        "--regions", nargs="+", default=["ALP", "HMA"], choices=sorted(REGION_STYLES)
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--layout",
        default="glaviz",
        choices=("glaviz", "published"),
        help="published: float64, contiguous, bright_dark_outlines, epsg (as the real files)",
    )
    bench.add_argument("--names", default="samples", choices=("samples", "demo", "benchmark"))
    args = parser.parse_args(argv)
    if args.what == "scene":
        files = make_scene(
            args.directory, size=tuple(args.size), seed=args.seed, region=args.region
        )
        print(f"wrote {files.optical}, {files.elevation}, {files.truth}")
    else:
        paths = make_benchmark_splits(
            args.directory,
            tiles=tuple(args.tiles),
            seed=args.seed,
            tile_size=args.tile_size,
            patch_size=args.patch_size,
            regions=tuple(args.regions),
            layout=args.layout,
            names=args.names,
        )
        print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
