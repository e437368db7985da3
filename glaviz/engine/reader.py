"""Deploy stage 1, the stack reader: scene rows in, normalised window rows out.

For every window row of the published grid the reader reads the scene rows it has not read yet
(consecutive window rows overlap by half a window, so the normalised rows of the previous strip
are kept: every scene row is read and decoded once), computes their validity, normalises them,
zero-pads the strip as the published pipeline did, and cuts it into windows.

Speed: the stack marks invalid values as NaN (``glaviz features``), so the read is a plain one —
a masked read (``masked=True``) builds a mask array per band and cost 8× the decode. A strip is
split into column chunks along the stack's block columns, and each chunk is read, decoded and
normalised by its own thread on its own dataset handle (GDAL handles are not thread-safe; numpy
and the DEFLATE decoder release the GIL), so decoding uses every core. The window loop
(:mod:`glaviz.engine.loop`) runs this reader ahead of the model in a prefetch thread.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.engine.tiling import TileGrid, read_window_from_padded
from glaviz.errors import InputError
from glaviz.published.location import SceneCoordinates
from glaviz.published.normalisation import NormalisationStats, normalise_bands
from glaviz.published.stack_layout import StackLayout, mark_nodata
from glaviz.runs.writes import gdal_cause

#: Reader threads (one dataset handle each); more than the cores buys nothing.
MAX_READ_THREADS = 4
#: Optical bands shown as natural colour in the quicklook (red, green, blue; 0-based).
RGB_BANDS: tuple[int, int, int] = (2, 1, 0)


@dataclass(frozen=True)
class SceneRows:
    """Per-pixel facts about consecutive scene rows that travel with their predictions.

    ``valid``: ``(n, width)`` True where every band the model reads is finite (deploy writes
    nodata elsewhere). ``rgb``: ``(n, preview columns, 3)`` red, green, blue of the quicklook's
    columns, in stack units, or None when no quicklook is made.
    """

    start: int
    valid: np.ndarray
    rgb: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def stop(self) -> int:
        return self.start + len(self.valid)

    def split(self, n: int) -> tuple[SceneRows, SceneRows]:
        """The first ``n`` rows and the rest."""
        rgb = (None, None) if self.rgb is None else (self.rgb[:n], self.rgb[n:])
        head = SceneRows(self.start, self.valid[:n], rgb[0])
        return head, SceneRows(self.start + len(head), self.valid[n:], rgb[1])

    @staticmethod
    def concat(parts: Sequence[SceneRows]) -> SceneRows:
        if len(parts) == 1:
            return parts[0]
        rgb = None if parts[0].rgb is None else np.concatenate([p.rgb for p in parts])  # type: ignore[misc]
        return SceneRows(parts[0].start, np.concatenate([p.valid for p in parts]), rgb)


class SceneRowQueue:
    """Scene rows in order, handed out again in blocks of any size (first in, first out)."""

    def __init__(self) -> None:
        self._parts: list[SceneRows] = []

    def put(self, rows: SceneRows) -> None:
        if len(rows):
            self._parts.append(rows)

    def take(self, start: int, n: int) -> SceneRows:
        """The next ``n`` rows, which must begin at scene row ``start``."""
        held = SceneRows.concat(self._parts) if self._parts else None
        if held is None or held.start != start or len(held) < n:
            raise RuntimeError(
                f"internal: asked for scene rows {start}…{start + n}, holding "
                f"{(held.start, held.stop) if held else 'none'}"
            )
        taken, rest = held.split(n)
        self._parts = [rest] if len(rest) else []
        return taken


@dataclass(frozen=True)
class WindowRow:
    """One window row of the grid, ready for the model.

    ``inputs`` maps model input names to one array per window, left to right. ``rows`` are the
    scene rows read for the first time for this window row (None for sources without them).
    """

    k: int
    inputs: dict[str, list[np.ndarray]]
    rows: SceneRows | None = None


class StackReader:
    """Iterate the window rows of ``grid`` over a feature stack (see the module docstring).

    ``location``: None, a fixed vector for every window (a region vector), or
    :class:`~glaviz.published.location.SceneCoordinates` (coordinate encoding at each
    window's centre).
    ``rgb_columns``: columns sampled for the quicklook, or None.
    ``rows_needed``: ``(height,)`` bool, the scene rows any computed window (grown by its halo)
    covers (:func:`glaviz.engine.selection.rows_to_read`); a window row whose new rows hold none
    of them, and whose own windows are not computed, is not read at all: its windows are zeros
    and its rows are reported invalid (they lie outside the region of interest). None: read
    every row.
    """

    def __init__(
        self,
        path: Path,
        *,
        layout: StackLayout,
        groups: Sequence[str],
        stats: NormalisationStats,
        grid: TileGrid,
        location: np.ndarray | SceneCoordinates | None = None,
        rgb_columns: np.ndarray | None = None,
        threads: int | None = None,
        rows_needed: np.ndarray | None = None,
    ) -> None:
        import rasterio

        self.rows_needed = rows_needed
        self.groups = tuple(groups)
        # Validity covers every group read, and optical always: published deploy marks invalid
        # optical pixels; a NaN elsewhere (a DEM hole, a SAR gap) would spread through the
        # fusion block's global pooling, so it is masked too and zeroed after normalising.
        self.read_groups = self.groups if "optical" in self.groups else ("optical", *self.groups)
        self.layout = layout
        self.stats = stats
        self.grid = grid
        self.location = location
        self.rgb_columns = rgb_columns
        self.path = Path(path)
        cores = os.cpu_count() or 1
        self.threads = max(1, min(threads or cores, MAX_READ_THREADS))
        self._handles: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        try:
            for _ in range(self.threads):
                self._handles.append(rasterio.open(path))
        except rasterio.errors.RasterioIOError as exc:
            self.close()
            raise read_error(self.path, exc) from exc
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="glaviz-read")
        self._chunks = _column_chunks(grid.width, self._handles[0].block_shapes[0][1], self.threads)
        self._indexes = [i for g in self.read_groups for i in layout.bands[g]]
        self._nodata = [self._handles[0].nodatavals[i - 1] for i in self._indexes]

    def close(self) -> None:
        """Stop the reader threads and close every dataset handle (safe to call twice)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()

    def __enter__(self) -> StackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def strip_nbytes(self) -> int:
        """Bytes of one window row's normalised strip (for the prefetch depth)."""
        bands = sum(len(self.layout.bands[g]) for g in self.groups)
        return self.grid.patch * self.grid.padded_width * bands * 4

    def __iter__(self) -> Iterator[WindowRow]:
        grid, patch = self.grid, self.grid.patch
        previous: dict[str, np.ndarray] = {}
        previous_origin = 0
        read_until = 0  # scene rows reported so far (read, or passed over)
        for k, row_origin in enumerate(grid.row_origins):
            plan = read_window_from_padded(grid, row_origin, 0, width=grid.padded_width)
            if not self._must_read(plan.scene_rows.start, plan.scene_rows.stop):
                rows = self._passed_over(read_until, plan.scene_rows.stop)
                read_until = max(read_until, plan.scene_rows.stop)
                previous = {}
                yield WindowRow(k, self._blank_inputs(row_origin), rows)
                continue
            strips = {
                g: np.zeros((patch, grid.padded_width, len(self.layout.bands[g])), np.float32)
                for g in self.groups
            }
            # Rows shared with the previous strip (the windows overlap by half) are copied, not
            # read again: padded rows row_origin … previous_origin + patch.
            shared = max(previous_origin + patch - row_origin, 0) if previous else 0
            for group, strip in strips.items():
                if shared:
                    strip[:shared] = previous[group][row_origin - previous_origin :]
            # After a window row passed over, the whole strip is read (nothing to share), but
            # only rows not yet reported are reported: those rows lie outside every computed
            # window's reach, so reporting them invalid before changed nothing.
            start = max(plan.scene_rows.start, read_until) if previous else plan.scene_rows.start
            stop = plan.scene_rows.stop
            top = start + grid.pad_top - row_origin  # strip row of scene row ``start``
            scene_rows = self._read(start, stop, strips, top)
            if start < read_until:
                scene_rows = scene_rows.split(min(read_until, stop) - start)[1]
            read_until = max(read_until, stop)
            previous, previous_origin = strips, row_origin
            inputs = {g: [s[:, c : c + patch] for c in grid.col_origins] for g, s in strips.items()}
            if self.location is not None:
                inputs["location"] = self._location(row_origin)
            yield WindowRow(k, inputs, scene_rows)

    def _must_read(self, start: int, stop: int) -> bool:
        """Whether a window row's strip is read: always without ``rows_needed``, else when its
        rows include a needed one (a computed window's rows, or rows its halo reaches)."""
        if self.rows_needed is None:
            return True
        return bool(self.rows_needed[start:stop].any())

    def _passed_over(self, start: int, stop: int) -> SceneRows:
        """Scene rows ``start:stop`` reported without reading them: invalid, no colours."""
        n = max(stop - start, 0)
        rgb = None
        if self.rgb_columns is not None:
            rgb = np.zeros((n, len(self.rgb_columns), 3), np.float32)
        return SceneRows(start, np.zeros((n, self.grid.width), bool), rgb)

    def _blank_inputs(self, row_origin: int) -> dict[str, list[np.ndarray]]:
        """Inputs of a window row that is not read: one zero window repeated (never computed)."""
        n, patch = len(self.grid.col_origins), self.grid.patch
        inputs = {
            g: [np.zeros((patch, patch, len(self.layout.bands[g])), np.float32)] * n
            for g in self.groups
        }
        if self.location is not None:
            inputs["location"] = self._location(row_origin)
        return inputs

    def _location(self, row_origin: int) -> list[np.ndarray]:
        if isinstance(self.location, SceneCoordinates):
            centres = [self.grid.window_centre(row_origin, c) for c in self.grid.col_origins]
            rows, cols = zip(*centres, strict=True)
            return list(self.location.at(rows, cols))
        return [self.location] * len(self.grid.col_origins)

    def _read(self, start: int, stop: int, strips: dict[str, np.ndarray], top: int) -> SceneRows:
        """Read scene rows ``start:stop`` into ``strips`` from strip row ``top``, normalised;
        return their validity (and quicklook colours)."""
        n = max(stop - start, 0)
        valid = np.ones((n, self.grid.width), bool)
        rgb = None
        if self.rgb_columns is not None:
            rgb = np.empty((n, len(self.rgb_columns), 3), np.float32)
        if n:
            if self._pool is None:
                raise RuntimeError("internal: the stack reader was closed")
            targets = {g: s[top : top + n, self.grid.pad_left :] for g, s in strips.items()}
            jobs = [
                self._pool.submit(self._read_chunk, handle, start, stop, cols, targets, valid, rgb)
                for handle, cols in zip(self._handles, self._chunks, strict=False)
            ]
            for job in jobs:
                job.result()
        return SceneRows(start, valid, rgb)

    def _read_chunk(
        self,
        handle: Any,
        start: int,
        stop: int,
        cols: slice,
        out: dict[str, np.ndarray],
        valid: np.ndarray,
        rgb: np.ndarray | None,
    ) -> None:
        from rasterio.errors import RasterioIOError
        from rasterio.windows import Window

        window = Window(cols.start, start, cols.stop - cols.start, stop - start)
        try:
            values = handle.read(self._indexes, window=window, out_dtype=np.float32)
        except RasterioIOError as exc:
            raise read_error(self.path, exc, rows=(start, stop)) from exc
        raw = mark_nodata(values, self._nodata)
        chunk_valid = valid[:, cols]
        for band in raw:
            chunk_valid &= np.isfinite(band)
        offset = 0
        for group in self.read_groups:
            count = len(self.layout.bands[group])
            bands = raw[offset : offset + count]
            offset += count
            if group == "optical" and rgb is not None and self.rgb_columns is not None:
                inside = (self.rgb_columns >= cols.start) & (self.rgb_columns < cols.stop)
                picked = self.rgb_columns[inside] - cols.start
                rgb[:, inside] = np.moveaxis(bands[list(RGB_BANDS)][:, :, picked], 0, -1)
            if group in out:
                normalise_bands(group, bands, self.stats, out=out[group][:, cols])


def read_error(
    path: Path, exc: BaseException, *, rows: tuple[int, int] | None = None
) -> InputError:
    """One :class:`InputError` line for a stack GDAL cannot read: a header that opens but data
    cut short (a copy that did not finish), or a damaged block."""
    where = f" (rows {rows[0]}-{rows[1]})" if rows else ""
    return InputError(
        f"cannot read stack {path}{where}: {gdal_cause(exc)}; the file is damaged or incomplete "
        "(an interrupted copy or download?): copy it again or rebuild it with glaviz features"
    )


@dataclass(frozen=True)
class StackInfo:
    """A feature stack that opens, checked before any model is loaded (:func:`inspect_stack`)."""

    path: Path
    height: int
    width: int
    count: int
    crs: Any
    transform: Any
    layout: StackLayout
    coordinates: SceneCoordinates | None = None
    #: The imagery's date when the stack carries one (``glaviz acquire`` tags its stacks).
    acquisition_date: str | None = None

    @property
    def grid(self) -> dict[str, Any]:
        """``{"width", "height", "crs", "transform"}``, what the writer needs of the scene."""
        return {
            "width": self.width,
            "height": self.height,
            "crs": self.crs,
            "transform": self.transform,
        }


def inspect_stack(path: Path, *, coordinates: bool = False) -> StackInfo:
    """Open the stack at ``path`` and refuse what cannot be mapped, without TensorFlow.

    Refused, each with one :class:`InputError` line: a missing or unreadable file, an empty
    stack, a stack without CRS (its outputs could not be placed on the ground), and optical bands
    that cannot be reflectance (integer digital numbers, values far outside the published
    range: :func:`~glaviz.published.stack_layout.require_reflectance`, the check ``glaviz
    features`` applies too). Only a few windows are read. ``coordinates``: also prepare the
    coordinate encoding of its windows.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    from glaviz.published.stack_layout import ACQUISITION_DATE_TAG, require_reflectance
    from glaviz.util.rasters import require_crs

    path = Path(path)
    if not path.exists():
        raise InputError(
            f"cannot open stack {path}: the file does not exist; check the path (glaviz "
            "features makes a stack)"
        )
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"cannot open stack {path}: {gdal_cause(exc)}") from None
    with ds:
        if ds.count == 0 or ds.height == 0 or ds.width == 0:
            raise InputError(f"{path} is empty")
        require_crs(ds, path, "stack")
        layout = StackLayout.read(ds)
        try:
            require_reflectance(ds, layout, name=f"stack {path}")
        except RasterioIOError as exc:
            raise read_error(path, exc) from exc
        return StackInfo(
            path=path,
            height=ds.height,
            width=ds.width,
            count=ds.count,
            crs=ds.crs,
            transform=ds.transform,
            layout=layout,
            coordinates=SceneCoordinates(ds) if coordinates else None,
            acquisition_date=ds.tags().get(ACQUISITION_DATE_TAG) or None,
        )


def _column_chunks(width: int, block: int, threads: int) -> list[slice]:
    """Split ``width`` columns into up to ``threads`` chunks on block boundaries."""
    blocks = math.ceil(width / block)
    per = math.ceil(blocks / threads)
    edges = [min(i * per * block, width) for i in range(threads + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]
