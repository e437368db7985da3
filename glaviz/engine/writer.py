"""Deploy stage 3, the writer: blended rows in, the output files out.

Each block of finished scene rows (:class:`~glaviz.engine.loop.BlendedRows`) becomes confidence
(calibrated if asked), optionally the probabilities, and outlines: the argmax goes through the
streaming median filter, and the nodata value is written afterwards where the reader found the
input invalid (the published order, see :mod:`glaviz.engine.postprocess`). Rows are written as
they come into tiled temporary GeoTIFFs; :meth:`SceneWriter.finish` turns them into
Cloud-Optimised GeoTIFFs, the polygons and the quicklook. The run record is written last by
:func:`write_record`. Nothing here is final until :meth:`OutputFolder.commit`.

Every write goes through :meth:`SceneWriter._io`: a failure (a full disk, a read-only folder)
becomes one :class:`~glaviz.errors.OutputWriteError` naming the output, and libtiff's own lines
about it are caught rather than printed (:class:`~glaviz.util.stderr.NativeStderr`). A writer
that fails, even while it is being built, closes every file it opened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glaviz.engine import postprocess
from glaviz.engine.loop import BlendedRows
from glaviz.engine.outputs import OUTLINE_COLORS, geotiff_profile, vectorise_outlines, write_cog
from glaviz.engine.quicklook import Quicklook
from glaviz.engine.reader import SceneRowQueue, SceneRows
from glaviz.errors import GlavizError
from glaviz.runs.outputs import RECORD_NAME, OutputFolder
from glaviz.runs.writes import is_write_failure, write_error
from glaviz.util.stderr import NativeStderr

if TYPE_CHECKING:
    from glaviz.engine.roi import RoiMask

#: Overview resampling per output: categories keep their values, floats are averaged.
RESAMPLING = {
    "outlines.tif": "nearest",
    "confidence.tif": "average",
    "probabilities.tif": "average",
}


@dataclass
class WriteSummary:
    """What the writer produced: pixel counts, polygons and its timings."""

    rows: int = 0
    glacier: int = 0
    valid: int = 0  # valid input pixels that were mapped (inside the region of interest)
    invalid: int = 0  # invalid input pixels (no-data, clouds …) inside the region of interest
    not_mapped: int = 0  # pixels outside the region of interest
    polygons: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def glacier_fraction(self) -> float:
        return self.glacier / max(self.valid, 1)

    def pixels(self) -> dict[str, int]:
        """Pixels by what the outlines hold there: mapped, invalid input, not mapped."""
        return {"mapped": self.valid, "invalid_input": self.invalid, "not_mapped": self.not_mapped}


class SceneWriter:
    """Writes deploy's outputs for one scene, row block by row block (see the module docstring).

    ``grid``: ``{"width", "height", "crs", "transform"}`` of the stack. ``calibration``: a
    :class:`~glaviz.calibration.CalibrationModel` or None. ``roi``: the region of interest
    (:class:`~glaviz.engine.roi.RoiMask`); outside it the outlines hold their nodata value and
    confidence and probabilities NaN, and those pixels count as *not mapped*.
    """

    def __init__(
        self,
        outputs: OutputFolder,
        *,
        grid: dict[str, Any],
        n_classes: int,
        calibration: Any = None,
        smoothing: int = 0,
        probabilities: bool = False,
        vector: bool = True,
        quicklook: Quicklook | None = None,
        roi: RoiMask | None = None,
    ) -> None:
        import rasterio

        self.roi = roi
        self.outputs = outputs
        self.width, self.height = grid["width"], grid["height"]
        self.calibration = calibration
        self.vector = vector
        self.quicklook = quicklook
        self.summary = WriteSummary(timings={"write_s": 0.0})
        self._smoother = postprocess.RowSmoother(smoothing, self.width)
        self._valid = SceneRowQueue()
        bands = {
            "outlines.tif": (1, "uint8", postprocess.OUTLINE_NODATA),
            "confidence.tif": (1, "float32", None),
        }
        if probabilities:
            bands["probabilities.tif"] = (n_classes, "float32", None)
        self._temps: dict[str, Path] = {}
        self._files: dict[str, Any] = {}
        self._native = NativeStderr()
        try:
            for name, (count, dtype, nodata) in bands.items():
                # Streamed into a plain tiled file beside the outputs; finish() makes the COG.
                self._temps[name] = outputs.scratch(f"{name}.stream.tif")
                profile = geotiff_profile(grid, count=count, dtype=dtype, nodata=nodata)
                with self._io(name):
                    self._files[name] = rasterio.open(self._temps[name], "w", **profile)
            with self._io("outlines.tif"):
                outlines = self._files["outlines.tif"]
                outlines.write_colormap(1, OUTLINE_COLORS)
                outlines.set_band_description(1, "glacier outlines (1 glacier, 0 other)")
            self._files["confidence.tif"].set_band_description(
                1,
                "calibrated confidence" if calibration is not None else "confidence (1 - entropy)",
            )
        except BaseException:
            # Nothing else holds these files: an open one would keep writing (or filling) a
            # scratch file that the output folder has already removed.
            self.close(failed=True)
            raise

    def __enter__(self) -> SceneWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)

    @contextlib.contextmanager
    def _io(self, name: str) -> Iterator[None]:
        """Run GDAL writes of output ``name``; a failure is one :class:`OutputWriteError`.

        libtiff's lines are caught meanwhile: with an exception they are its cause; without
        one, a line that reports a failed write is the error itself (libtiff reports some
        failures, a full disk when a file is closed, only there).
        """
        path = self.outputs.outdir / name
        with contextlib.ExitStack() as stack:
            native = stack.enter_context(self._native.capture())
            try:
                yield
            except BaseException as exc:
                stack.close()  # restore standard error first, then read what was caught
                if is_write_failure(exc):
                    raise write_error(path, exc, native.failure) from exc
                native.replay()
                raise
        if native.failure:
            raise write_error(path, None, native.failure)
        native.replay()

    def close(self, *, failed: bool = False) -> None:
        """Close the streamed files (the output folder removes them after a failure).

        ``failed``: the run is failing already; a file that cannot be flushed then adds no
        second error, and what libtiff prints about it is dropped.
        """
        files, self._files = self._files, {}
        for name, f in files.items():
            if failed:
                with contextlib.suppress(Exception), self._native.capture():
                    f.close()
            else:
                with self._io(name):
                    f.close()
        if failed:
            self._native.close()

    def write(self, block: BlendedRows) -> None:
        """Write one block of finished scene rows."""
        t = time.perf_counter()
        start, probs = block.start, block.probs
        rows = block.rows or SceneRows(start, np.ones(probs.shape[:2], bool))
        self._valid.put(rows)
        window = _rows(start, len(probs), self.width)
        conf = postprocess.confidence(probs, dtype=np.float64)
        if self.calibration is not None:
            conf = self.calibration.apply(conf)
        conf32 = conf.astype(np.float32)
        outside = None if self.roi is None else ~self.roi.rows(start, len(probs))
        if outside is not None:
            conf32[outside] = np.nan
        with self._io("confidence.tif"):
            self._files["confidence.tif"].write(conf32, 1, window=window)
        if "probabilities.tif" in self._files:
            bands = np.moveaxis(probs.astype(np.float32), -1, 0)
            if outside is not None:
                bands[:, outside] = np.nan
            with self._io("probabilities.tif"):
                self._files["probabilities.tif"].write(bands, window=window)
        if self.quicklook is not None:
            self.quicklook.add_confidence(start, conf32)
            if rows.rgb is not None:
                self.quicklook.add_rgb(start, rows.rgb)
        self._write_outlines(self._smoother.push(postprocess.outlines(probs)))
        self.summary.timings["write_s"] += time.perf_counter() - t

    def _write_outlines(self, outlines: np.ndarray | None) -> None:
        if outlines is None or not len(outlines):
            return
        start = self.summary.rows
        valid = self._valid.take(start, len(outlines)).valid
        inside = np.ones_like(valid) if self.roi is None else self.roi.rows(start, len(outlines))
        final = postprocess.apply_nodata(outlines, valid & inside)
        with self._io("outlines.tif"):
            self._files["outlines.tif"].write(final, 1, window=_rows(start, len(final), self.width))
        if self.quicklook is not None:
            self.quicklook.add_outlines(start, final, not_mapped=~inside)
        self.summary.rows += len(final)
        self.summary.glacier += int(np.count_nonzero(final == 1))
        self.summary.valid += int(np.count_nonzero(valid & inside))
        self.summary.invalid += int(np.count_nonzero(~valid & inside))
        self.summary.not_mapped += int(np.count_nonzero(~inside))

    def finish(self) -> WriteSummary:
        """Flush the smoother, then write the COGs, the polygons and the quicklook."""
        t = time.perf_counter()
        self._write_outlines(self._smoother.finish())
        self.close()
        if self.summary.rows != self.height:
            raise GlavizError(f"internal: wrote {self.summary.rows} of {self.height} outline rows")
        self.summary.timings["write_s"] += time.perf_counter() - t
        t = time.perf_counter()
        for name, stream in self._temps.items():
            with self._io(name):
                write_cog(stream, self.outputs.temp(name), resampling=RESAMPLING[name])
        self.summary.timings["cog_s"] = time.perf_counter() - t
        if self.vector:
            t = time.perf_counter()
            target = self.outputs.temp("outlines.gpkg")
            with self._io("outlines.gpkg"):
                self.summary.polygons = vectorise_outlines(
                    self.outputs.temp("outlines.tif"), target
                )
            self.summary.timings["vector_s"] = time.perf_counter() - t
        if self.quicklook is not None:
            t = time.perf_counter()
            with self._io("quicklook.png"):
                self.quicklook.write(self.outputs.temp("quicklook.png"))
            self.summary.timings["quicklook_s"] = time.perf_counter() - t
        self._native.close()
        return self.summary


def _rows(start: int, n: int, width: int) -> Any:
    from rasterio.windows import Window

    return Window(0, start, width, n)


def write_record(outputs: OutputFolder, record: dict[str, Any]) -> None:
    """Write the run record (``run.json``) among the outputs, with the sizes of the outputs
    written (:meth:`OutputFolder.write_record`, so that ``--skip-existing`` can tell a complete
    run from one whose files were cut since); it is committed last."""
    try:
        outputs.write_record(record)
    except OSError as exc:
        raise write_error(outputs.outdir / RECORD_NAME, exc) from exc
