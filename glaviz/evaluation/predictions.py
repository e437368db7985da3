"""Reading the predictions file of ``glaviz predict``, tile by tile, and scoring it.

Layout (the contract of ``glaviz predict``, docs/evaluation.md): one HDF5 group per tile with
datasets ``prob`` (H, W, 2) float, ``pred`` (H, W) uint8, ``true`` (H, W) uint8 (absent for data
without truth) and attributes ``region``, ``subregion``. A benchmark split holds thousands of tiles,
so nothing here loads more than one block of rows of one tile at a time; both ``glaviz evaluate``
and ``glaviz calibrate`` read the file through :func:`open_predictions` and :func:`iter_blocks`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.errors import InputError
from glaviz.evaluation.metrics import Counts, Evaluation

if TYPE_CHECKING:
    import h5py

__all__ = [
    "BLOCK_PIXELS",
    "Block",
    "TileInfo",
    "evaluate_predictions",
    "iter_blocks",
    "open_predictions",
    "tiles",
]

log = logging.getLogger(__name__)

#: Pixels per block read from one tile (a few tens of MB of float64 at most).
BLOCK_PIXELS = 1 << 21
#: Label for tiles without a ``region`` / ``subregion`` attribute.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class TileInfo:
    """One tile group: its name, region labels and shape."""

    name: str
    region: str
    subregion: str
    shape: tuple[int, int]
    group: h5py.Group


@dataclass(frozen=True)
class Block:
    """Rows ``rows`` of one tile: whatever of ``prob``/``pred``/``true`` was asked for."""

    tile: TileInfo
    rows: slice
    prob: np.ndarray | None
    pred: np.ndarray | None
    true: np.ndarray | None


@contextmanager
def open_predictions(path: str | Path) -> Iterator[h5py.File]:
    """Open a predictions file read-only; a missing or non-HDF5 file is an :class:`InputError`."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(f"predictions file {path} does not exist; write one with glaviz predict")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the predictions .h5 file of glaviz predict")
    if not h5py.is_hdf5(path):
        raise InputError(
            f"{path} is not an HDF5 file; glaviz evaluate/calibrate read the predictions file "
            "of glaviz predict (for a raster map use --prediction OUTLINES.tif --truth …)"
        )
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"cannot read predictions file {path}: {error}") from error
    with file:
        yield file


def _label(group: Any, key: str) -> str | None:
    value = group.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return str(value)


def tiles(
    file: h5py.File,
    *,
    path: str | Path,
    need: tuple[str, ...],
    command: str,
    labels: bool = True,
) -> list[TileInfo]:
    """Every tile group, checked up front for the datasets ``need``, so errors come before work.

    ``prob`` must be (H, W, 2), the others (H, W). A file without ``true`` gets a message that
    says truth is needed, since that is the usual mistake (predictions of unlabelled scenes).
    With ``labels``, tiles without region/subregion attributes are reported (once) as
    ``"unknown"``.
    """
    import h5py

    found: list[TileInfo] = []
    unlabelled = 0
    for name in file:
        group = file[name]
        if not isinstance(group, h5py.Group):
            continue
        missing = [key for key in need if key not in group]
        if missing and "outlines" in group and "prob" not in group:
            raise InputError(_benchmark_split_message(path, command))
        if missing == ["pred"] and "prob" in group:
            missing = []  # pred is recomputed from prob (argmax) when absent
        if "true" in missing:
            raise InputError(
                f"tile {name!r} of {path} has no 'true' dataset; {command} needs the truth. "
                "Run glaviz predict on a benchmark split with outlines (train/val/test), not on "
                "unlabelled data"
            )
        if missing:
            raise InputError(
                f"tile {name!r} of {path} lacks {', '.join(missing)}; expected the predictions "
                "layout of glaviz predict (prob, pred, true per tile)"
            )
        shape = _tile_shape(group, name, path)
        region, subregion = _label(group, "region"), _label(group, "subregion")
        if region is None or subregion is None:
            unlabelled += 1
        found.append(
            TileInfo(
                name=name,
                region=region or UNKNOWN,
                subregion=subregion or UNKNOWN,
                shape=shape,
                group=group,
            )
        )
    if not found:
        raise InputError(f"{path} holds no tile groups; is it the output of glaviz predict?")
    if unlabelled and labels:
        log.warning(
            "%d tile(s) of %s have no region/subregion attribute; counted as %r",
            unlabelled,
            path,
            UNKNOWN,
        )
    return found


def _benchmark_split_message(path: str | Path, command: str) -> str:
    from glaviz.published.benchmark import split_of

    known = split_of(path)
    what = f"the {known[1]} split of the {known[0]} files" if known else "a benchmark split"
    return (
        f"{path} is {what} (tiles with features and outlines), not a predictions file; "
        f"{command} reads what glaviz predict writes: run glaviz predict --weights W --dataset "
        f"{path} -o predictions.h5, then {command} on predictions.h5"
    )


def _tile_shape(group: Any, name: str, path: str | Path) -> tuple[int, int]:
    shapes = {key: group[key].shape for key in ("prob", "pred", "true") if key in group}
    base = shapes.get("pred") or shapes.get("true") or shapes["prob"][:2]
    expected = {"prob": (*base, 2), "pred": base, "true": base}
    wrong = {key: shape for key, shape in shapes.items() if tuple(shape) != tuple(expected[key])}
    if wrong or len(base) != 2:
        raise InputError(
            f"tile {name!r} of {path} has inconsistent shapes "
            f"({', '.join(f'{k} {tuple(s)}' for k, s in shapes.items())}); expected prob "
            "(H, W, 2), pred (H, W), true (H, W)"
        )
    return int(base[0]), int(base[1])


def iter_blocks(
    tile_list: list[TileInfo], *, prob: bool = False, pred: bool = False, true: bool = True
) -> Iterator[Block]:
    """Row blocks of each tile with the datasets asked for; at most :data:`BLOCK_PIXELS` each.

    ``pred`` falls back to the argmax of ``prob`` (ties to background, as deploy) when a tile
    has no ``pred`` dataset.
    """
    for tile in tile_list:
        height, width = tile.shape
        step = max(1, BLOCK_PIXELS // max(width, 1))
        group = tile.group
        for start in range(0, height, step):
            rows = slice(start, min(start + step, height))
            p = np.asarray(group["prob"][rows]) if prob or (pred and "pred" not in group) else None
            if pred:
                if "pred" in group:
                    pr = np.asarray(group["pred"][rows])
                else:
                    assert p is not None
                    pr = (p[..., 1] > p[..., 0]).astype(np.uint8)
            else:
                pr = None
            t = np.asarray(group["true"][rows]) if true else None
            yield Block(tile=tile, rows=rows, prob=p if prob else None, pred=pr, true=t)


def evaluate_predictions(*, predictions: str | Path, progress: bool = False) -> Evaluation:
    """Score a predictions file: counts per tile, summed per region, subregion and in total.

    Streams block by block over the tiles; memory is one block whatever the file size.
    """
    from glaviz.util.progress import Progress

    with open_predictions(predictions) as file:
        tile_list = tiles(file, path=predictions, need=("pred", "true"), command="glaviz evaluate")
        result = Evaluation()
        with Progress(progress, total=len(tile_list), description="evaluate") as bar:
            current = None
            for block in iter_blocks(tile_list, pred=True, true=True):
                assert block.pred is not None and block.true is not None
                result.add(
                    Counts.from_arrays(block.pred, block.true),
                    region=block.tile.region,
                    subregion=block.tile.subregion,
                )
                if block.tile is not current:
                    current = block.tile
                    result.tiles += 1
                    bar.advance()
    return result
