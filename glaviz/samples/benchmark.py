"""Seeded synthetic benchmark files in the published HDF5 layout, for ``train`` and ``predict``.

:func:`make_benchmark` writes one group per tile with normalised, padded features and one-hot
``outlines`` (the layout :mod:`glaviz.published.benchmark` reads); the tiles are scenes of
:mod:`glaviz.samples.scene`, so a model trained on them maps those scenes too.

Every tile group holds:

- ``optical`` (H, W, 6), ``dem`` (H, W, 2: elevation, slope in degrees) — float32, normalised
  with the published statistics (:func:`~glaviz.published.normalisation.normalise_group`);
  other groups named in ``groups`` (e.g. ``thermal``) get plausible constant-ish values, for
  tests;
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
and ``epsg`` (4326) and ``tile_name`` attributes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from glaviz.errors import ConfigError
from glaviz.published.groups import REGIONS
from glaviz.runs.atomic import atomic_path
from glaviz.runs.outputs import refuse_existing
from glaviz.samples.scene import (
    _METRES_PER_DEGREE,
    REGION_STYLES,
    RegionStyle,
    SceneArrays,
    synthesize_scene,
)


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
    padding. What each tile group holds, and how ``layout="published"`` differs, is in the
    module docstring. Pass ``patch_size=384`` for the published stored sizes; smaller patches
    give smaller files with the same structure.
    """
    import h5py

    th, tw = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
    _check_options(tiles, (th, tw), patch_size, layout, regions, groups)
    published = layout == "published"
    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)

    shape = _TileShape.of(th, tw, patch_size)
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
            arrays = _tile_arrays(scene, groups, rng, resolution=resolution, published=published)
            row, col = 10 + 3 * k, 20 + 2 * k
            name = f"{region}-{row}-{col}"
            g = f.create_group(name)
            _write_arrays(g, arrays, shape, patch_size=patch_size, published=published)
            if published:
                g.attrs.update({"epsg": 4326, "tile_name": name})
            g.attrs.update(shape.attrs())
            g.attrs.update(
                {
                    "region": region,
                    "subregion": f"{region}-{1 + k % max(1, subregions_per_region)}",
                    **_lonlat_bounds(style, row, col, shape, resolution),
                }
            )
    return path


def _check_options(
    tiles: int,
    tile_shape: tuple[int, int],
    patch_size: int,
    layout: str,
    regions: Sequence[str],
    groups: Sequence[str],
) -> None:
    """Every :func:`make_benchmark` option problem, before anything is written."""
    from glaviz.published.groups import GROUP_BANDS

    if tiles < 1:
        raise ConfigError(f"tiles must be at least 1, got {tiles}")
    if patch_size < 2 or patch_size % 2:
        raise ConfigError(f"patch_size must be an even number >= 2, got {patch_size}")
    if layout not in ("glaviz", "published"):
        raise ConfigError(f"layout must be 'glaviz' or 'published', got {layout!r}")
    for side in tile_shape:
        if side < 8 or (side % 2 and layout != "published"):
            raise ConfigError(
                f"tile sides must be even and at least 8 (so the padding is symmetric), got {side}"
            )
    unknown = [r for r in regions if r not in REGION_STYLES]
    if unknown or not regions:
        raise ConfigError(f"unknown regions {unknown}; use names from {', '.join(REGIONS)}")
    bad = [g for g in groups if g not in GROUP_BANDS]
    if bad or "optical" not in groups:
        raise ConfigError(f"groups must include optical and come from {', '.join(GROUP_BANDS)}")


@dataclass(frozen=True)
class _TileShape:
    """Original and stored (padded) size of every tile, and the padding above and left."""

    original: tuple[int, int]
    stored: tuple[int, int]
    padding: tuple[int, int]

    @classmethod
    def of(cls, th: int, tw: int, patch_size: int) -> _TileShape:
        sh, sw = padded_size(th, patch_size), padded_size(tw, patch_size)
        return cls((th, tw), (sh, sw), ((sh - th) // 2, (sw - tw) // 2))

    def attrs(self) -> dict[str, int]:
        return {
            "height": self.stored[0],
            "width": self.stored[1],
            "padding_height": self.padding[0],
            "padding_width": self.padding[1],
            "original_height": self.original[0],
            "original_width": self.original[1],
        }


def _tile_arrays(
    scene: SceneArrays,
    groups: Sequence[str],
    rng: np.random.Generator,
    *,
    resolution: float,
    published: bool,
) -> dict[str, np.ndarray]:
    """A tile's normalised feature groups and labels, unpadded."""
    from glaviz.features.slope import slope_degrees
    from glaviz.published.normalisation import normalise_group

    slope = slope_degrees(scene.elevation, xres=resolution, yres=resolution)
    physical: dict[str, np.ndarray] = {
        "optical": scene.optical,
        "dem": np.stack([scene.elevation, slope], axis=-1),
    }
    for group in groups:
        if group not in physical:
            physical[group] = _extra_group(group, scene, rng)
    arrays = {g: normalise_group(g, physical[g]) for g in groups}
    arrays["outlines"] = np.stack([~scene.glacier, scene.glacier], axis=-1).astype(np.float32)
    if published:
        arrays["bright_dark_outlines"] = _bright_dark(scene)
    return arrays


def _write_arrays(
    group: Any,
    arrays: dict[str, np.ndarray],
    shape: _TileShape,
    *,
    patch_size: int,
    published: bool,
) -> None:
    """Pad each array to the stored size and write it in the chosen layout."""
    (ph, pw), (sh, sw) = shape.padding, shape.stored
    for key, data in arrays.items():
        padded = _pad(data, ph, pw, sh, sw)
        if key == "outlines" and not published:
            padded[..., 0] = 1.0 - padded[..., 1]  # glaviz labels padding non-glacier
        if published:
            # The published layout: float64 (uint8 for bright_dark_outlines), contiguous,
            # uncompressed, fill value 0.
            dtype = np.uint8 if key == "bright_dark_outlines" else np.float64
            group.create_dataset(key, data=padded.astype(dtype), fillvalue=dtype(0))
        else:
            chunks = (min(patch_size, sh), min(patch_size, sw), data.shape[-1])
            group.create_dataset(key, data=padded, chunks=chunks)


def _lonlat_bounds(
    style: RegionStyle, row: int, col: int, shape: _TileShape, resolution: float
) -> dict[str, float]:
    """Plausible lon/lat bounds of the unpadded tile at grid position (row, col) of a region."""
    th, tw = shape.original
    lat_span = th * resolution / _METRES_PER_DEGREE
    lon_span = tw * resolution / (_METRES_PER_DEGREE * math.cos(math.radians(style.lat)))
    ymax = style.lat + (20 - row) * lat_span
    xmin = style.lon + (col - 20) * lon_span
    return {"xmin": xmin, "xmax": xmin + lon_span, "ymin": ymax - lat_span, "ymax": ymax}


def make_benchmark_splits(
    directory: str | os.PathLike[str],
    *,
    tiles: tuple[int, int, int] = (8, 2, 2),
    seed: int = 0,
    names: str = "samples",
    **kwargs: object,
) -> dict[str, Path]:
    """Write the train, val and test splits with disjoint seeds; return their paths.

    ``names`` picks the file names from :data:`~glaviz.published.benchmark.SPLIT_FILE_NAMES`:
    ``samples`` (``train.h5`` …), ``demo`` (``gsgm_train_DEMO.hdf5`` …) or ``benchmark``
    (``20230905_train_global_ps384.hdf5`` …). ``kwargs`` go to :func:`make_benchmark`
    (``tile_size``, ``patch_size``, ``regions``, ``layout`` …).
    """
    from glaviz.published.benchmark import SPLIT_FILE_NAMES

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
