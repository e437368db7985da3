"""The training input pipeline: benchmark HDF5 → random / consecutive windows → ``tf.data``.

Reading follows the published samplers (``dataloaders/samplers``): training draws a tile
uniformly, then a window position uniformly inside the stored (padded) tile; validation walks
every tile in non-overlapping windows, row by row. Only the window is read (h5py slicing), so a
split never has to fit in memory.

Augmentations follow the published transformations (``dataloaders/transformations``) and run on
numpy arrays inside the generator, drawn from one seeded ``numpy.random.Generator``, so a seed
reproduces the patch stream exactly:

* flips (each axis p = 0.5), rotation by 90/180/270° (p = 0.75), crop-and-scale (p = 0.5, crop
  80–100 % and nearest-neighbour resize back);
* gamma contrast (per group p = 0.5, per channel gamma in [0.8, 1.2] around the patch minimum),
  feature-group occlusion (per group p = 0.5, a rectangle up to ``occlusion_size`` set to 0),
  Gaussian shift (sigma 0.025 per channel) and noise (sigma 0.005 per pixel), each per group
  p = 0.5; pixels equal to 0 (no data) stay 0;
* region encoding: the one-hot is replaced by "unknown" with p = ``unknown_region``; validation
  scores every window twice, with the true region and with "unknown", as published;
* label smoothing ``y (1 - s) + s / n_classes``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glaviz.config.train import AugmentSection, TrainConfig
from glaviz.errors import InputError
from glaviz.published.benchmark import BenchmarkDataset, TileInfo, split_of
from glaviz.published.groups import GROUP_BANDS
from glaviz.published.location import UNKNOWN_REGION, LocationEncoder

log = logging.getLogger("glaviz.training")

#: Published noise augmentation strengths (``utils/utils.py``: shift 0.025, noise 0.005).
NOISE_SHIFT_SIGMA = 0.025
NOISE_PIXEL_SIGMA = 0.005
GAMMA_RANGE = (0.8, 1.2)
CROP_SCALE = 0.8

Sample = tuple[dict[str, np.ndarray], np.ndarray]


@dataclass
class TrainingData:
    """The opened splits, the tiles that survive the filters, and the location encoder."""

    train: BenchmarkDataset
    val: BenchmarkDataset
    train_tiles: list[TileInfo]
    val_tiles: list[TileInfo]
    features: tuple[str, ...]
    patch_size: int
    location: LocationEncoder | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        self.train.close()
        self.val.close()

    @property
    def train_patches(self) -> int:
        """Whole patches in the training tiles (the published epoch-length base)."""
        p = self.patch_size
        return sum((t.height // p) * (t.width // p) for t in self.train_tiles)

    def val_windows(self) -> list[tuple[TileInfo, int, int]]:
        p = self.patch_size
        return [
            (t, r, c)
            for t in self.val_tiles
            for r in range(0, t.height - p + 1, p)
            for c in range(0, t.width - p + 1, p)
        ]

    @property
    def val_samples(self) -> int:
        repeat = 2 if self.location is not None and self.location.encoding == "region" else 1
        return repeat * len(self.val_windows())


def open_training_data(
    config: TrainConfig, *, region_names: Sequence[str] | None = None
) -> TrainingData:
    """Open train/val splits, apply region/subregion/feature filters, check everything needed.

    Raises one :class:`InputError` for a missing file, a feature group no tile holds, tiles
    without labels, or filters that leave nothing. ``region_names`` fixes the region-encoding
    order (fine-tuning a region-encoding model); by default it is the sorted regions of the
    training tiles plus "unknown", as published.
    """
    d = config.data
    features = tuple(d.features)
    p = config.model.patch_size
    _check_split_names({"train": d.train, "val": d.val, "test": d.test})
    train = BenchmarkDataset(d.train)
    try:
        val = BenchmarkDataset(d.val)
    except BaseException:
        train.close()
        raise
    try:
        data = _select(config, train, val, features, p, region_names)
    except BaseException:
        train.close()
        val.close()
        raise
    return data


def _check_split_names(paths: dict[str, Any]) -> None:
    """Warn when a published (or sample) file name says it is another split than its setting.

    ``data.val = gsgm_test_DEMO.hdf5`` would select the model on the test split, which then no
    longer measures generalisation; a warning, since a user may mean it.
    """
    for setting, path in paths.items():
        known = split_of(path) if path is not None else None
        if known is not None and known[1] != setting:
            log.warning(
                "data.%s is %s, which is the %s split of the %s files by its name; check that "
                "the splits are not swapped",
                setting,
                path,
                known[1],
                known[0],
            )


def _select(
    config: TrainConfig,
    train: BenchmarkDataset,
    val: BenchmarkDataset,
    features: tuple[str, ...],
    p: int,
    region_names: Sequence[str] | None,
) -> TrainingData:
    d = config.data
    dropped: dict[str, int] = {}
    chosen: dict[str, list[TileInfo]] = {}
    for split, ds in (("train", train), ("val", val)):
        ds.require_groups(features, what=f"the config (data.features, {split} split)")
        in_area = ds.tiles(regions=d.regions, subregions=d.subregions)
        if not in_area:
            raise InputError(
                f"dataset {ds.path} has no tiles in regions {d.regions or 'any'} / subregions "
                f"{d.subregions or 'any'}; it has regions {', '.join(ds.regions)}"
            )
        tiles = [t for t in in_area if all(g in t.groups for g in features)]
        if len(tiles) < len(in_area):
            # The published feature filter: SAR and thermal exist for some regions only.
            dropped[split] = len(in_area) - len(tiles)
            log.warning(
                "%s: %d of %d tiles lack one of %s and are skipped",
                ds.path,
                dropped[split],
                len(in_area),
                ", ".join(features),
            )
        if not tiles:
            raise InputError(
                f"dataset {ds.path}: no tile in the selected regions holds all of "
                f"{', '.join(features)}"
            )
        ds.require_labels(tiles)
        small = [t for t in tiles if t.height < p or t.width < p]
        if small:
            t = small[0]
            raise InputError(
                f"dataset {ds.path}, tile {t.name} is {t.height} × {t.width} pixels, smaller "
                f"than model.patch_size = {p}; use a smaller patch size"
            )
        chosen[split] = tiles

    location: LocationEncoder | None = None
    encoding = config.model.location_encoding
    if encoding == "region":
        names = (
            list(region_names)
            if region_names
            else [
                *sorted({t.region for t in chosen["train"]}),
                UNKNOWN_REGION,
            ]
        )
        location = LocationEncoder("region", tuple(names))
    elif encoding == "coordinate":
        location = LocationEncoder("coordinate")
        for t in chosen["train"] + chosen["val"]:
            if t.bounds is None:
                raise InputError(
                    f"tile {t.name} has no xmin/xmax/ymin/ymax attributes; coordinate "
                    "encoding needs them (use model.location_encoding = 'none')"
                )
    return TrainingData(
        train=train,
        val=val,
        train_tiles=chosen["train"],
        val_tiles=chosen["val"],
        features=features,
        patch_size=p,
        location=location,
        dropped=dropped,
    )


# --------------------------------------------------------------------------------------------------
# Samplers (numpy)


def random_samples(
    data: TrainingData, augment: AugmentSection, *, seed: int, occlusion_size: int
) -> Iterator[Sample]:
    """Endless augmented training samples ``(inputs, labels)`` from random windows."""
    rng = np.random.default_rng(seed)
    p = data.patch_size
    tiles = data.train_tiles
    while True:
        tile = tiles[int(rng.integers(len(tiles)))]
        row = int(rng.integers(0, tile.height - p + 1))
        col = int(rng.integers(0, tile.width - p + 1))
        window = (row, col, p, p)
        x = data.train.read(tile.name, data.features, window)
        y = data.train.labels(tile.name, window)
        x, y = augment_sample(x, y, augment, rng, occlusion_size=occlusion_size)
        if data.location is not None:
            vector = data.location.for_window(tile, row, col, p)
            if data.location.encoding == "region" and rng.random() < augment.unknown_region:
                vector = data.location.unknown()
            x["location"] = vector
        if augment.label_smoothing:
            s = augment.label_smoothing
            y = y * (1.0 - s) + s / y.shape[-1]
        yield x, y


def validation_samples(data: TrainingData) -> Iterator[Sample]:
    """Every consecutive window of the validation tiles (twice with region encoding)."""
    p = data.patch_size
    for tile, row, col in data.val_windows():
        window = (row, col, p, p)
        x = data.val.read(tile.name, data.features, window)
        y = data.val.labels(tile.name, window)
        if data.location is None:
            yield x, y
            continue
        x["location"] = data.location.for_window(tile, row, col, p)
        yield x, y
        if data.location.encoding == "region":
            yield {**x, "location": data.location.unknown()}, y


def augment_sample(
    x: dict[str, np.ndarray],
    y: np.ndarray,
    augment: AugmentSection,
    rng: np.random.Generator,
    *,
    occlusion_size: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Apply the switched-on augmentations to one sample (geometric ones to labels too)."""
    arrays = {**x, "__labels__": y}
    if augment.flips:
        if rng.random() < 0.5:
            arrays = {k: v[::-1] for k, v in arrays.items()}
        if rng.random() < 0.5:
            arrays = {k: v[:, ::-1] for k, v in arrays.items()}
    if augment.rotations and rng.random() < 0.75:
        k = int(rng.integers(1, 4))
        arrays = {key: np.rot90(v, k, axes=(1, 0)) for key, v in arrays.items()}
    if augment.crop_and_scale and rng.random() < 0.5:
        size = arrays["__labels__"].shape[0]
        new = max(1, int((rng.random() * (1 - CROP_SCALE) + CROP_SCALE) * size))
        r0 = int(rng.integers(0, size - new + 1))
        c0 = int(rng.integers(0, size - new + 1))
        # Nearest-neighbour resize of the crop back to the patch size.
        index = (np.arange(size) * new // size).astype(np.intp)
        arrays = {k: v[r0 : r0 + new, c0 : c0 + new][index][:, index] for k, v in arrays.items()}
    y = np.ascontiguousarray(arrays.pop("__labels__"), dtype=np.float32)
    x = {k: np.array(v, dtype=np.float32) for k, v in arrays.items()}
    for group, v in x.items():
        nodata = v == 0.0
        changed = False
        if augment.gamma_contrast and rng.random() < 0.5 and (~nodata).any():
            gammas = rng.uniform(*GAMMA_RANGE, size=v.shape[-1]).astype(np.float32)
            lo = float(v[~nodata].min())
            shifted = np.maximum(v - lo + 1e-6, 0.0)
            v = shifted**gammas + lo - 1e-6
            changed = True
        if augment.occlusion and rng.random() < 0.5:
            oh = int(rng.random() * occlusion_size)
            ow = int(rng.random() * occlusion_size)
            r = int(rng.integers(0, v.shape[0] - oh + 1))
            c = int(rng.integers(0, v.shape[1] - ow + 1))
            v[r : r + oh, c : c + ow] = 0.0
            nodata = v == 0.0
        if augment.noise:
            if rng.random() < 0.5:
                v = v + rng.normal(0.0, NOISE_SHIFT_SIGMA, v.shape[-1]).astype(np.float32)
                changed = True
            if rng.random() < 0.5:
                v = v + rng.normal(0.0, NOISE_PIXEL_SIGMA, v.shape).astype(np.float32)
                changed = True
        if changed:
            v = np.where(nodata, 0.0, v).astype(np.float32)
        x[group] = v
    return x, y


# --------------------------------------------------------------------------------------------------
# tf.data


def _signature(data: TrainingData) -> tuple[dict[str, Any], Any]:
    import tensorflow as tf

    p = data.patch_size
    inputs = {g: tf.TensorSpec((p, p, GROUP_BANDS[g]), tf.float32) for g in data.features}
    if data.location is not None:
        inputs["location"] = tf.TensorSpec((data.location.size,), tf.float32)
    return inputs, tf.TensorSpec((p, p, 2), tf.float32)


def _finish(ds: Any, batch_size: int) -> Any:
    import tensorflow as tf

    ds = ds.map(
        lambda x, y: (x, {"deepsupervision": y, "output": y}),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # A Python generator cannot be sharded by file; MirroredStrategy splits each batch instead.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def train_dataset(data: TrainingData, config: TrainConfig, *, seed: int) -> Any:
    """Endless batches of augmented random windows, targets for both heads."""
    import tensorflow as tf

    augment = config.augment
    size = config.occlusion_size
    ds = tf.data.Dataset.from_generator(
        lambda: random_samples(data, augment, seed=seed, occlusion_size=size),
        output_signature=_signature(data),
    )
    return _finish(ds, config.training.batch_size)


def validation_dataset(data: TrainingData, config: TrainConfig) -> Any:
    """All consecutive validation windows, in order, batched; one pass per epoch."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_generator(
        lambda: validation_samples(data), output_signature=_signature(data)
    )
    return _finish(ds, config.training.batch_size)
