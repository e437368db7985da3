"""Test helpers shared by several test modules: tiny seeded stacks and tiny model bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from glaviz.model.bundle import BundleMetadata, save_bundle
from glaviz.model.glavitu import GlaViTUConfig, build_glavitu
from glaviz.published.groups import GROUP_STACK_BANDS
from glaviz.published.normalisation import NormalisationStats

PATCH = 32


def write_stack(
    path: Path,
    *,
    height: int = 70,
    width: int = 90,
    groups: tuple[str, ...] = ("optical", "dem"),
    crs: str | None = "EPSG:32632",
    seed: int = 0,
) -> Path:
    """A small synthetic feature stack in physical units with a few NaN optical pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    ice = (np.sin(yy / 9.0) + np.cos(xx / 7.0)) > 0.3
    bands, names = [], []
    for group in groups:
        for name in GROUP_STACK_BANDS[group]:
            if group == "optical":
                base = np.where(ice, 0.7, 0.15) + rng.normal(0, 0.02, ice.shape)
            elif name == "elevation":
                base = 3000 + 5 * yy + rng.normal(0, 1, ice.shape)
            elif name == "slope":
                base = 10 + 20 * ~ice + rng.normal(0, 1, ice.shape)
            else:
                base = rng.random(ice.shape) * 0.5
            bands.append(base.astype(np.float32))
            names.append(name)
    data = np.stack(bands)
    if "optical" in groups:
        data[:6, 5, 7] = np.nan
        data[:6, height - 1, :4] = np.nan
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": len(bands),
        "dtype": "float32",
        "crs": crs,
        "transform": from_origin(500000, 5200000, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, name in enumerate(names, start=1):
            ds.set_band_description(i, name)
    return path


def tiny_bundle(
    path: Path, *, location: str = "none", location_size: int = 0, seed: int = 1, **extra
) -> Path:
    config = GlaViTUConfig.create(
        features=["optical", "dem"],
        preset="tiny",
        patch_size=PATCH,
        location_encoding=location,
        location_size=location_size,
    )
    train, _ = build_glavitu(config)
    rng = np.random.default_rng(seed)
    weights = []
    for w in train.weights:
        value = rng.normal(0, 0.2, w.shape)
        if "moving_variance" in w.path:
            value = np.abs(value) + 1.0
        weights.append(value.astype(np.float32))
    train.set_weights(weights)
    meta = BundleMetadata(
        architecture=config, normalization=NormalisationStats.published().to_dict(), **extra
    )
    return save_bundle(path, train, meta)


def write_raster(path: Path, data: np.ndarray, crs: str | None, transform, nodata=None) -> Path:
    """A plain GeoTIFF from a (bands, H, W) or (H, W) array."""
    data = data[None] if data.ndim == 2 else data
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def error_line(capsys) -> str:
    """The single ``Error: …`` line a failing CLI call printed (and no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    return lines[0]


def _keras2_owner_name(owner, variable, unique, containers: dict[str, str]) -> str:
    """The Keras 2 name of the layer that owns ``variable``: class-based, numbered file-wide."""
    parts = variable.path.split("/")
    cls = type(owner).__name__
    block = next((p for p in parts if p.startswith("block")), None)
    prefix = ""
    if block is not None:  # transformer blocks were nested layers in Keras 2: keep that prefix
        key = "/".join(parts[: parts.index(block) + 1])
        if key not in containers:
            containers[key] = unique("transformer_block")
        prefix = containers[key] + "/"
    if cls == "EinsumDense":  # the query/key/value/output projections of multi-head attention
        key = "/".join(parts[:-2])
        if key not in containers:
            containers[key] = unique("multi_head_attention")
        return f"{prefix}{containers[key]}/{owner.name}"
    if owner.name == "patch_embedding":
        return "patch_embedding/" + unique("dense")
    if cls == "PositionalEmbedding":
        return "add_positional_embedding"
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in cls).lstrip("_")
    snake = snake.replace("conv2_d", "conv2d")
    return prefix + unique(snake)


def write_keras2_checkpoint(
    path: Path,
    *,
    features: tuple[str, ...] = ("optical", "dem"),
    preset: str = "tiny",
    patch_size: int = 384,
    location: str = "none",
    location_size: int = 0,
    seed: int = 0,
) -> Path:
    """A GlaViTU checkpoint in the published Keras 2 HDF5 layout, with seeded random weights.

    Same structure as the published ``glavitu_global_weights.h5`` (``layer_names`` and
    ``keras_version`` on the root, one group per top-level layer, ``weight_names`` with Keras 2
    class-based names ending in ``:0``, trainables first, moving statistics last), so
    ``inspect_checkpoint`` reads the architecture back from it. ``preset="tiny"`` keeps it ~1 MB;
    the registry checks only feature groups, location size and patch size, so a reduced-size
    model passes as a published one.
    """
    import h5py

    from glaviz.model.checkpoint import published_order

    config = GlaViTUConfig.create(
        features=list(features),
        preset=preset,
        patch_size=patch_size,
        location_encoding=location,
        location_size=location_size,
    )
    train, _ = build_glavitu(config)
    rng = np.random.default_rng(seed)
    counters: dict[str, int] = {}

    def unique(base: str) -> str:
        n = counters.get(base, 0)
        counters[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    containers: dict[str, str] = {}
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in train.layers])
        for layer in train.layers:
            group = f.create_group(layer.name)
            if not layer.weights:
                continue
            owners = {}
            for sub in layer._flatten_layers(include_self=True, recursive=True):
                for variable in sub.weights:
                    owners[id(variable)] = sub  # the innermost layer is seen last
            names, owner_names = [], {}
            for variable in published_order(layer):
                owner = owners[id(variable)]
                if id(owner) not in owner_names:
                    owner_names[id(owner)] = _keras2_owner_name(owner, variable, unique, containers)
                leaf = variable.path.rsplit("/", 1)[-1]
                name = f"{owner_names[id(owner)]}/{leaf}:0"
                value = rng.normal(0, 0.05, tuple(variable.shape))
                if leaf == "moving_variance":
                    value = np.abs(value) + 1.0
                group.create_dataset(name, data=value.astype(np.float32))
                names.append(name.encode())
            group.attrs["weight_names"] = np.array(names)
    return path
