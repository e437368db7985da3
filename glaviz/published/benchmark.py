"""Reader for the benchmark HDF5 layout (train/val/test splits), shared by train and predict.

Layout, as published (konstantin-a-maslov/scalable_glacier_mapping: ``dataloaders/``,
``predict.py``): one HDF5 group per tile (``ALP-28-23``); inside it one dataset per feature group
(``optical`` (H, W, 6), ``dem`` (H, W, 2), optionally ``co_pol_sar``, ``cross_pol_sar``,
``in_sar``, ``thermal``), already normalised, and the one-hot labels ``outlines`` (H, W, 2).
Tiles are stored *padded*; ``height``/``width`` give the stored size,
``original_height``/``original_width`` the unpadded one, which sits at rows
``padding_height : padding_height + original_height`` (and likewise for columns: the padding is
``(stored - original) // 2`` above/left, the rest below/right), ``region`` and ``subregion``
give the tile's place, and ``xmin``/``xmax``/``ymin``/``ymax`` its lon/lat bounds.

The published files (``20230905_{train,val,test}_global_ps384.hdf5``, 243/81/86 GB, and the
10 % subsample ``gsgm_{train,val,test}_DEMO.hdf5``) store every dataset as float64, contiguous
and uncompressed (fill 0.0), padded to multiples of 384, and add a uint8
``bright_dark_outlines`` (H, W, 3) dataset and ``epsg`` (4326) and ``tile_name`` attributes per
tile; glaviz ignores those. Any dtype is read and converted to float32 window by window.

Only the tiles and windows asked for are read (h5py hyperslabs: a window of a contiguous dataset
is read row by row, never the whole tile), so a split of many gigabytes is never loaded whole.
Errors are :class:`~glaviz.errors.InputError` with the file, what it holds and what was asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import InputError
from glaviz.published.groups import GROUP_BANDS

#: The labels dataset of every tile (one-hot, channel 1 = glacier).
LABELS = "outlines"
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: File names of the splits: the published full dataset, its 10 % demo subsample, and the names
#: ``glaviz.samples`` writes. ``{split}`` is one of :data:`SPLITS`.
SPLIT_FILE_NAMES: dict[str, str] = {
    "benchmark": "20230905_{split}_global_ps384.hdf5",
    "demo": "gsgm_{split}_DEMO.hdf5",
    "samples": "{split}.h5",
}
_SPLIT_PATTERNS = {
    kind: re.compile(
        "^" + re.escape(name).replace(re.escape("{split}"), "(?P<split>train|val|test)") + "$"
    )
    for kind, name in SPLIT_FILE_NAMES.items()
}


def split_of(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """``(kind, split)`` when the file name is a known split name, e.g. ``("demo", "val")``.

    >>> split_of("data/gsgm_test_DEMO.hdf5")
    ('demo', 'test')
    """
    name = Path(path).name
    for kind, pattern in _SPLIT_PATTERNS.items():
        match = pattern.match(name)
        if match:
            return kind, match["split"]
    return None


def find_split(directory: str | os.PathLike[str], split: str) -> Path | None:
    """The ``split`` file in ``directory`` under any known name (the published names first)."""
    for name in SPLIT_FILE_NAMES.values():
        candidate = Path(directory) / name.format(split=split)
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class TileInfo:
    """A tile's attributes and the datasets it holds, read without touching the pixel data."""

    name: str
    region: str
    subregion: str
    height: int  #: stored (padded) rows
    width: int  #: stored (padded) columns
    padding_height: int
    padding_width: int
    original_height: int
    original_width: int
    #: ``(xmin, xmax, ymin, ymax)`` in lon/lat degrees of the unpadded tile, if recorded.
    bounds: tuple[float, float, float, float] | None
    groups: tuple[str, ...]  #: feature groups present (canonical order); labels not included
    has_labels: bool

    @property
    def unpadded(self) -> tuple[int, int, int, int]:
        """``(row, col, height, width)`` of the original tile inside the stored one."""
        return self.padding_height, self.padding_width, self.original_height, self.original_width

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The original tile of stored ``(H, W, …)`` data (see :func:`crop_padding`)."""
        return crop_padding(
            array,
            self.padding_height,
            self.padding_width,
            height=self.original_height,
            width=self.original_width,
        )

    @property
    def centre(self) -> tuple[float, float] | None:
        """``(lat, lon)`` of the tile centre in degrees, if the bounds are known."""
        if self.bounds is None:
            return None
        xmin, xmax, ymin, ymax = self.bounds
        return (ymin + ymax) / 2.0, (xmin + xmax) / 2.0

    def window_centre(self, row: int, col: int, size: int) -> tuple[float, float] | None:
        """``(lat, lon)`` of the centre of a ``size`` window at stored ``(row, col)``.

        Follows the published coordinate plugin: positions are measured in the unpadded tile
        and mapped linearly onto its bounds (north up).
        """
        if self.bounds is None:
            return None
        xmin, xmax, ymin, ymax = self.bounds
        x = col - self.padding_width + size / 2.0
        y_up = self.original_height - (row - self.padding_height + size / 2.0)
        lon = xmin + x * (xmax - xmin) / self.original_width
        lat = ymin + y_up * (ymax - ymin) / self.original_height
        return lat, lon


def crop_padding(
    array: np.ndarray,
    padding_height: int,
    padding_width: int,
    *,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """Remove the stored padding from ``(H, W, …)`` data.

    ``height``/``width`` are the original size; without them the padding is taken as equal on
    both sides. The published tiles put ``(stored - original) // 2`` above/left, so an odd
    difference leaves one more row/column below/right: pass the original size to crop exactly
    (the published ``predict.py`` cropped ``[p:-p]`` and kept that row in its scores). Written
    with explicit stop indexes because ``a[p:-p]`` is empty for ``p = 0``.
    """
    h, w = array.shape[0], array.shape[1]
    ph, pw = int(padding_height), int(padding_width)
    oh = h - 2 * ph if height is None else int(height)
    ow = w - 2 * pw if width is None else int(width)
    if ph < 0 or pw < 0 or oh < 1 or ow < 1 or ph + oh > h or pw + ow > w:
        raise InputError(
            f"an original {oh} × {ow} tile padded by ({ph}, {pw}) does not fit inside an array "
            f"of {h} × {w} pixels"
        )
    return array[ph : ph + oh, pw : pw + ow]


class BenchmarkDataset:
    """An open benchmark split. Use as a context manager, or call :meth:`close`.

    >>> with BenchmarkDataset("val.h5") as ds:              # doctest: +SKIP
    ...     for tile in ds.tiles(regions=["ALP"]):
    ...         x = ds.read(tile.name, ["optical", "dem"])
    ...         y = ds.labels(tile.name)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"dataset {self.path} does not exist; check the path")
        try:
            self._file: Any = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(
                f"dataset {self.path} is not a readable HDF5 file ({exc}); "
                "expected a benchmark split such as train.h5"
            ) from None
        self._infos: dict[str, TileInfo] = {}
        for name in self._file:
            obj = self._file[name]
            if isinstance(obj, h5py.Group):
                self._infos[name] = _tile_info(self.path, name, obj)
        if not self._infos:
            self.close()
            raise InputError(
                f"dataset {self.path} holds no tile groups; expected one group per tile "
                "(e.g. ALP-28-23) with optical, dem and outlines datasets"
            )

    def __enter__(self) -> BenchmarkDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 file (idempotent)."""
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[TileInfo]:
        return iter(self._infos.values())

    @property
    def groups(self) -> tuple[str, ...]:
        """Feature groups present in at least one tile, canonical order."""
        present = {g for info in self._infos.values() for g in info.groups}
        return tuple(g for g in GROUP_BANDS if g in present)

    @property
    def regions(self) -> tuple[str, ...]:
        """Regions of the tiles, sorted (the published region-encoding order)."""
        return tuple(sorted({info.region for info in self._infos.values()}))

    def info(self, tile: str) -> TileInfo:
        """Attributes of one tile; an unknown name is an :class:`InputError`."""
        try:
            return self._infos[tile]
        except KeyError:
            raise InputError(f"dataset {self.path} has no tile {tile!r}") from None

    def tiles(
        self,
        *,
        regions: Iterable[str] | None = None,
        subregions: Iterable[str] | None = None,
        groups: Iterable[str] | None = None,
    ) -> list[TileInfo]:
        """Tiles in file order, filtered like the published tile filters.

        ``regions``/``subregions``: keep tiles in any of them (empty or None = all).
        ``groups``: keep only tiles holding all these feature groups (the published feature
        filter: SAR and thermal exist for some regions only).
        """
        regions = set(regions or ())
        subregions = set(subregions or ())
        wanted = tuple(groups or ())
        out = []
        for info in self._infos.values():
            if regions and info.region not in regions:
                continue
            if subregions and info.subregion not in subregions:
                continue
            if wanted and not all(g in info.groups for g in wanted):
                continue
            out.append(info)
        return out

    def require_groups(self, groups: Sequence[str], *, what: str = "the config") -> None:
        """Raise one :class:`InputError` unless some tile holds every group in ``groups``."""
        missing = [g for g in groups if g not in self.groups]
        if missing:
            has = ", ".join(self.groups) or "no feature groups"
            raise InputError(
                f"dataset {self.path} has groups {has}; {what} asks for {', '.join(missing)}"
            )

    def read(
        self,
        tile: str,
        groups: Sequence[str],
        window: tuple[int, int, int, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Feature arrays ``(h, w, C)`` float32 of one tile, whole or a ``window``.

        ``window`` is ``(row, col, height, width)`` in stored (padded) pixels.
        """
        info = self.info(tile)
        missing = [g for g in groups if g not in info.groups]
        if missing:
            raise InputError(
                f"dataset {self.path}, tile {tile} has groups {', '.join(info.groups)}; "
                f"{', '.join(missing)} requested"
            )
        return {g: self._slice(tile, g, window) for g in groups}

    def labels(self, tile: str, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """One-hot labels ``(h, w, 2)`` float32 of one tile, whole or a ``window``."""
        info = self.info(tile)
        if not info.has_labels:
            raise InputError(
                f"dataset {self.path}, tile {tile} has no {LABELS!r} labels; "
                "training and evaluation need labelled splits"
            )
        return self._slice(tile, LABELS, window)

    def require_labels(self, tiles: Iterable[TileInfo]) -> None:
        """One :class:`InputError` naming the first tile without labels, if any."""
        for info in tiles:
            if not info.has_labels:
                raise InputError(
                    f"dataset {self.path}, tile {info.name} has no {LABELS!r} dataset "
                    f"(it holds {', '.join(info.groups) or 'nothing'}); "
                    "training needs labelled tiles"
                )

    def _slice(self, tile: str, name: str, window: tuple[int, int, int, int] | None) -> np.ndarray:
        dataset = self._file[tile][name]
        if window is None:
            data = dataset[()]
        else:
            row, col, h, w = window
            data = dataset[row : row + h, col : col + w]
        data = np.asarray(data, dtype=np.float32)
        return data[..., None] if data.ndim == 2 else data


def _attr(group: Any, key: str, default: Any = None) -> Any:
    value = group.attrs.get(key, default)
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tile_info(path: Path, name: str, group: Any) -> TileInfo:
    import h5py

    datasets = {k for k in group if isinstance(group[k], h5py.Dataset)}
    shape: tuple[int, ...] | None = None
    for key in (LABELS, *GROUP_BANDS):
        if key in datasets:
            shape = group[key].shape
            break
    height = _attr(group, "height", shape[0] if shape else None)
    width = _attr(group, "width", shape[1] if shape else None)
    if height is None or width is None:
        raise InputError(f"dataset {path}, tile {name} has no height/width and no datasets")
    ph = int(_attr(group, "padding_height", 0))
    pw = int(_attr(group, "padding_width", 0))
    oh = int(_attr(group, "original_height", int(height) - 2 * ph))
    ow = int(_attr(group, "original_width", int(width) - 2 * pw))
    if ph < 0 or pw < 0 or oh < 1 or ow < 1 or ph + oh > int(height) or pw + ow > int(width):
        raise InputError(
            f"dataset {path}, tile {name}: original size {oh} × {ow} with padding ({ph}, {pw}) "
            f"does not fit the stored {height} × {width} pixels; the tile attributes are damaged"
        )
    bounds = None
    if all(k in group.attrs for k in ("xmin", "xmax", "ymin", "ymax")):
        bounds = tuple(float(_attr(group, k)) for k in ("xmin", "xmax", "ymin", "ymax"))
    region = str(_attr(group, "region", name.split("-")[0]))
    return TileInfo(
        name=name,
        region=region,
        subregion=str(_attr(group, "subregion", region)),
        height=int(height),
        width=int(width),
        padding_height=ph,
        padding_width=pw,
        original_height=oh,
        original_width=ow,
        bounds=bounds,  # type: ignore[arg-type]
        groups=tuple(g for g in GROUP_BANDS if g in datasets),
        has_labels=LABELS in datasets,
    )
