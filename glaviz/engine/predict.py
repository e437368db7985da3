"""``glaviz predict``: run a model over every tile of a benchmark split, as the published predict.

Each tile is stored padded and already normalised. As in the published ``predict.py``, windows of
the model's patch size slide with stride patch/2 over the stored tile (no further padding), their
softmax outputs are blended with the Gaussian weights, and the stored padding is cropped before
writing. The deploy engine's window loop does the work, tile by tile, reading one window row of
the tile at a time from the HDF5 file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.engine.loop import LoopTimings, window_loop
from glaviz.engine.reader import WindowRow
from glaviz.errors import ConfigError
from glaviz.published.location import LocationEncoder, region_names
from glaviz.runs.atomic import atomic_path
from glaviz.runs.outputs import refuse_existing
from glaviz.util.progress import Progress

if TYPE_CHECKING:
    from glaviz.config.predict import PredictConfig

log = logging.getLogger(__name__)

_GZIP = {"compression": "gzip", "compression_opts": 4}


@dataclass
class PredictResult:
    """What ``predict`` wrote."""

    path: Path
    tiles: int
    windows: int
    timings: dict[str, float]

    def summary(self) -> str:
        """The line ``glaviz predict`` prints."""
        return (
            f"{self.tiles} tiles ({self.windows} windows) predicted in "
            f"{self.timings['loop_s']:.1f} s; written to {self.path}"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ``glaviz predict``, less the ``status`` the CLI adds."""
        return {
            "outputs": [str(self.path)],
            "counts": {"tiles": self.tiles, "windows": self.windows},
            "timings": self.timings,
        }


def tile_window_grid(height: int, width: int, patch: int) -> Any:
    """The published predict grid over a stored tile: no extra padding, stride patch/2.

    When a side is not covered exactly by that stride (the published loop would leave its last
    rows without any window) a final window flush with the edge is added. A tile smaller than
    one window falls back to deploy's centred zero padding.
    """
    from glaviz.engine.tiling import TileGrid, tile_grid

    if height < patch or width < patch:
        return tile_grid(height, width, patch)
    stride = patch // 2

    def origins(size: int) -> tuple[int, ...]:
        values = list(range(0, size - patch + 1, stride))
        if values[-1] != size - patch:
            values.append(size - patch)
        return tuple(values)

    return TileGrid(
        height=height,
        width=width,
        patch=patch,
        stride=stride,
        padded_height=height,
        padded_width=width,
        pad_top=0,
        pad_left=0,
        row_origins=origins(height),
        col_origins=origins(width),
    )


def tile_location(encoder: LocationEncoder | None, info: Any) -> np.ndarray | None:
    """The location input of a whole tile: its region's one-hot, or its centre's sin/cos."""
    if encoder is None:
        return None
    if encoder.encoding == "coordinate" and info.centre is None:
        raise ConfigError(
            f"tile {info.name} has no xmin/xmax/ymin/ymax attributes, which coordinate "
            "encoding needs"
        )
    return encoder.for_tile(info, info.centre)


def location_encoder(model: Any) -> LocationEncoder | None:
    """The encoder of a loaded model's location input (None when it has none)."""
    config = model.config
    if not config.uses_location:
        return None
    if config.location_encoding == "coordinate":
        return LocationEncoder("coordinate")
    return LocationEncoder(
        "region", tuple(region_names(config.location_size, known=model.region_names))
    )


def _tile_rows(
    data: Any, info: Any, groups: list[str], grid: Any, location: np.ndarray | None
) -> Iterator[WindowRow]:
    from glaviz.engine.tiling import read_window_from_padded

    for k, row_origin in enumerate(grid.row_origins):
        plan = read_window_from_padded(grid, row_origin, 0, width=grid.padded_width)
        rows, cols = plan.scene_rows, plan.scene_cols
        window = (rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start)
        arrays = data.read(info.name, groups, window=window)
        inputs: dict[str, list[np.ndarray]] = {}
        for group, values in arrays.items():
            strip = np.zeros((grid.patch, grid.padded_width, values.shape[-1]), np.float32)
            strip[plan.window_rows, plan.window_cols] = np.nan_to_num(values)
            inputs[group] = [strip[:, c : c + grid.patch] for c in grid.col_origins]
        if location is not None:
            inputs["location"] = [location] * len(grid.col_origins)
        yield WindowRow(k, inputs)


def preflight(config: PredictConfig) -> None:
    """Every check of a predict run that needs no TensorFlow: the weights resolve and fit
    ``--features`` (read without TensorFlow), the dataset opens and some tile passes the
    filters with the model's groups. A typo costs well under a second, not TensorFlow's
    start-up."""
    from glaviz.engine.loading import inspect_weights
    from glaviz.published.benchmark import BenchmarkDataset

    weights = inspect_weights(config.weights, features=config.features)
    with BenchmarkDataset(config.dataset) as data:
        _select_tiles(data, config, list(weights.groups), weights.path)


def _select_tiles(data: Any, config: PredictConfig, groups: list[str], weights: Path) -> list[Any]:
    """The tiles of ``data`` to predict; an error when the model's groups or the filters leave
    none."""
    data.require_groups(groups, what=f"the model ({weights.name})")
    tiles = data.tiles(regions=config.region, subregions=config.subregion, groups=groups)
    if not tiles:
        raise ConfigError(
            f"no tile of {config.dataset} matches the region/subregion filters and holds "
            f"{', '.join(groups)}"
        )
    return tiles


def predict(config: PredictConfig, *, progress: bool = False) -> PredictResult:
    """Predict every tile of ``config.dataset`` that passes its region/subregion filters.

    Each tile becomes one group of the predictions file, named as the tile, holding ``prob``
    (float32 softmax, padding cropped), ``pred`` (uint8 argmax) and, when the split has labels,
    ``true`` (uint8), with the tile's ``region`` and ``subregion`` as attributes: the layout that
    ``glaviz evaluate`` and ``glaviz calibrate`` read.
    """
    import h5py

    from glaviz.engine.inference import BatchedModel, batch_size_for_budget
    from glaviz.engine.loading import load_for_inference
    from glaviz.published.benchmark import BenchmarkDataset
    from glaviz.util.tf import import_tensorflow

    output, dataset, tta, mc = Path(config.output), Path(config.dataset), config.tta, config.mc
    refuse_existing(output, overwrite=config.overwrite)
    preflight(config)
    import_tensorflow()  # only now: everything checkable without it has been checked
    model = load_for_inference(
        config.weights, features=config.features, mc_dropout=mc > 0, precision=config.precision
    )
    arch = model.config
    groups = list(model.groups)
    p = arch.patch_size
    batch_size = config.batch_size or batch_size_for_budget(arch, tta=tta)
    predictor = BatchedModel.for_model(model, batch_size=batch_size, tta=tta, mc=mc)
    encoder = location_encoder(model)

    timings = LoopTimings()
    windows = 0
    with (
        atomic_path(output) as tmp,
        BenchmarkDataset(dataset) as data,
        h5py.File(tmp, "w") as out,
    ):
        tiles = _select_tiles(data, config, groups, model.path)
        with Progress(progress, total=len(tiles), description="predict") as bar:
            for info in tiles:
                grid = tile_window_grid(info.height, info.width, p)
                prob = np.zeros((info.height, info.width, arch.n_classes), np.float32)
                source = _tile_rows(data, info, groups, grid, tile_location(encoder, info))
                for block in window_loop(source, grid=grid, predictor=predictor, timings=timings):
                    prob[block.start : block.start + len(block.probs)] = block.probs
                windows += grid.n_windows
                _write_tile(out, data, info, info.crop(prob))
                bar.advance()
        out.attrs["weights"] = str(model.path)
        out.attrs["dataset"] = str(dataset.resolve())
        out.attrs["tta"] = tta
        out.attrs["mc"] = mc
    return PredictResult(path=output, tiles=len(tiles), windows=windows, timings=timings.as_dict())


def _write_tile(out: Any, data: Any, info: Any, prob: np.ndarray) -> None:
    """One tile's group of the predictions file: ``prob``, ``pred``, ``true`` when labelled."""
    group = out.create_group(info.name)
    group.create_dataset("prob", data=prob, **_GZIP)
    pred = np.argmax(prob, axis=-1).astype(np.uint8)
    group.create_dataset("pred", data=pred, **_GZIP)
    if info.has_labels:
        labels = data.labels(info.name, window=info.unpadded)
        true = labels[..., -1].round().astype(np.uint8)
        group.create_dataset("true", data=true, **_GZIP)
    group.attrs["tile_name"] = info.name
    group.attrs["region"] = info.region
    group.attrs["subregion"] = info.subregion
