"""The window loop shared by ``deploy`` and ``predict``: prefetch, batch, blend, emit rows.

A source yields window rows (:class:`RowItem`) of a :class:`~glaviz.engine.tiling.TileGrid`; a
reader thread runs the source one row ahead while the model works on the current one; windows are
grouped into fixed-shape batches across row boundaries; finished rows of the blended softmax are
handed to a callback as soon as no later window touches them. Callers decide what a row becomes
(GeoTIFF rows for deploy, arrays of a predictions file for predict).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glaviz.errors import ConfigError
from glaviz.progress import Progress

_DONE = object()


@dataclass
class RowItem:
    """One window row, normalised and ready for the model.

    ``inputs`` maps model input names to one array per window of the row, left to right.
    ``extra`` carries whatever the source wants to pass along (deploy: the validity of the scene
    rows read for this window row).
    """

    k: int
    inputs: dict[str, list[np.ndarray]]
    extra: Any = field(default=None)


def best_batch_size(n_windows: int, largest: int) -> int:
    """The batch size up to ``largest`` that wastes the fewest padded windows (larger on ties).

    Batches have one fixed shape (one compiled graph), so the last batch is zero-padded: 9
    windows in batches of 4 would compute 12, in batches of 3 exactly 9.
    """
    if largest < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {largest}")
    return min(range(largest, 0, -1), key=lambda b: -(-n_windows // b) * b)


class Prefetcher:
    """Runs a generator in a thread, one item ahead, and re-raises its errors in the caller."""

    def __init__(self, items: Iterator[Any], depth: int = 1) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(_DONE)
        except BaseException as exc:  # handed to the consumer thread
            self._queue.put(exc)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class CrossRowBatcher:
    """Fills every model batch, across window rows, and hands back rows once complete.

    A scene whose window rows hold fewer windows than a batch (or not a multiple of it) would
    otherwise run padded batches on every row; here only the very last batch is padded.
    """

    def __init__(self, predictor: Any, per_row: int) -> None:
        self.predictor = predictor
        self.per_row = per_row
        self._inputs: dict[str, list[np.ndarray]] = {}
        self._rows: list[int] = []
        self._done: list[np.ndarray] = []

    def add(self, k: int, inputs: dict[str, list[np.ndarray]]) -> list[tuple[int, np.ndarray]]:
        for name, windows in inputs.items():
            self._inputs.setdefault(name, []).extend(windows)
        self._rows.append(k)
        size = self.predictor.batch_size
        while len(next(iter(self._inputs.values()))) >= size:
            self._run(size)
        return self._complete_rows()

    def flush(self) -> list[tuple[int, np.ndarray]]:
        pending = len(next(iter(self._inputs.values()), []))
        if pending:
            self._run(pending)
        return self._complete_rows()

    def _run(self, n: int) -> None:
        batch = {name: windows[:n] for name, windows in self._inputs.items()}
        self._inputs = {name: windows[n:] for name, windows in self._inputs.items()}
        self._done.extend(self.predictor.predict(batch))

    def _complete_rows(self) -> list[tuple[int, np.ndarray]]:
        ready = []
        while self._rows and len(self._done) >= self.per_row:
            ready.append((self._rows.pop(0), np.stack(self._done[: self.per_row])))
            self._done = self._done[self.per_row :]
        return ready


def run_window_rows(
    rows: Iterable[RowItem],
    *,
    grid: Any,
    predictor: Any,
    on_rows: Callable[[tuple[int, np.ndarray] | None], None],
    on_item: Callable[[RowItem], None] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Predict and blend every window row of ``grid``; return the loop's timings.

    ``on_rows`` receives ``(first_scene_row, probabilities (n, width, classes) float64)`` each time
    rows become final (or None when none did). ``on_item`` sees each row item as it arrives.
    """
    from glaviz.engine.blend import RowBlender

    n_classes = None
    blender = None
    per_row = len(grid.col_origins)
    patch = grid.patch
    timings = {"model_s": 0.0, "wait_s": 0.0}
    bar = Progress(progress, total=grid.n_windows, description="windows", rate_unit="windows")
    batches = CrossRowBatcher(predictor, per_row)
    reader = Prefetcher(iter(rows))
    t_loop = time.perf_counter()

    def blend(ready: list[tuple[int, np.ndarray]]) -> None:
        nonlocal blender, n_classes
        for k, probs in ready:
            if blender is None:
                n_classes = probs.shape[-1]
                blender = RowBlender(grid, n_classes, dtype=np.float64)
            blender.add_row(k, probs.reshape(per_row, patch, patch, n_classes))
            on_rows(blender.pop_finished())
            bar.advance(per_row)

    with bar:
        try:
            t_wait = time.perf_counter()
            for item in reader:
                timings["wait_s"] += time.perf_counter() - t_wait
                if on_item is not None:
                    on_item(item)
                t = time.perf_counter()
                ready = batches.add(item.k, item.inputs)
                timings["model_s"] += time.perf_counter() - t
                blend(ready)
                t_wait = time.perf_counter()
            t = time.perf_counter()
            ready = batches.flush()
            timings["model_s"] += time.perf_counter() - t
            blend(ready)
            if blender is None:
                raise ConfigError("internal: the window grid produced no windows")
            on_rows(blender.finish())
        finally:
            reader.close()
    timings["loop_s"] = time.perf_counter() - t_loop
    return timings
