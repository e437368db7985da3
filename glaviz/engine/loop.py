"""Deploy stage 2, the window loop: prefetch, batch, predict, blend, emit finished rows.

A source yields the window rows (:class:`~glaviz.engine.reader.WindowRow`) of a
:class:`~glaviz.engine.tiling.TileGrid`; a prefetch thread runs the source ahead of the model;
windows are grouped into fixed-shape batches across row boundaries; the blended softmax of scene
rows comes out (:class:`BlendedRows`, with the validity read for the same rows) as soon as no
later window touches them. Deploy, predict and optimise-bias's reader share it; callers decide
what the rows become.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from glaviz.engine.blend import RowBlender
from glaviz.engine.reader import SceneRowQueue, SceneRows, WindowRow
from glaviz.engine.selection import WindowSelection
from glaviz.engine.tiling import TileGrid
from glaviz.errors import ConfigError, OutOfMemoryError
from glaviz.util.progress import Progress

_DONE = object()


class Predictor(Protocol):
    """What the loop needs from a model: a batch size and probabilities for stacked windows."""

    batch_size: int

    def predict(self, inputs: dict[str, Any]) -> np.ndarray: ...


@dataclass
class LoopTimings:
    """Seconds spent in the loop: waiting for the reader, in the model, in total."""

    wait_s: float = 0.0
    model_s: float = 0.0
    blend_s: float = 0.0
    loop_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "wait_s": self.wait_s,
            "model_s": self.model_s,
            "blend_s": self.blend_s,
            "loop_s": self.loop_s,
        }


@dataclass(frozen=True)
class BlendedRows:
    """Finished scene rows: ``probs`` ``(n, width, classes)`` float64 from scene row ``start``,
    and the facts the reader found for the same rows (None when the source has none)."""

    start: int
    probs: np.ndarray
    rows: SceneRows | None = None


def best_batch_size(n_windows: int, largest: int) -> int:
    """The batch size up to ``largest`` that wastes the fewest padded windows (larger on ties).

    Batches have one fixed shape (one compiled graph), so the last batch is zero-padded: 9
    windows in batches of 4 would compute 12, in batches of 3 exactly 9.
    """
    if largest < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {largest}")
    # A batch larger than the scene's windows only pads: n_windows itself wastes none. Clamping
    # first also keeps the search short whatever ``largest`` is.
    largest = min(largest, max(n_windows, 1))
    return min(range(largest, 0, -1), key=lambda b: -(-n_windows // b) * b)


class Prefetcher:
    """Runs a generator in a thread, ``depth`` items ahead, and re-raises its errors here.

    The reader runs ahead of the model this way. (Running the model and blend ahead of the writer
    too was tried: it raised the published model's peak RSS at 1500² by about 60 MB — the model
    then allocates in a thread of its own — for a gain only a constant model shows.)
    """

    def __init__(self, items: Iterator[Any], depth: int = 1) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._offer(item):
                    return
            self._offer(_DONE)
        except BaseException as exc:  # handed to the consumer thread
            self._offer(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator's own clean-up runs in its thread
                close()

    def _offer(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the producer after its current item and wait for its clean-up."""
        self._stop.set()
        self._thread.join(timeout=timeout)


#: A window row whose model outputs are complete: ``(k, probs, keep)``. ``probs`` holds the
#: computed windows only (None when none was), ``keep`` which ones they are (None: all).
ReadyRow = tuple[int, np.ndarray | None, np.ndarray | None]


class CrossRowBatcher:
    """Fills every model batch, across window rows, and hands back rows once complete.

    A scene whose window rows hold fewer windows than a batch (or not a multiple of it) would
    otherwise run padded batches on every row; here only the very last batch is padded.
    Windows a :class:`~glaviz.engine.selection.WindowSelection` leaves out never enter a batch.
    """

    def __init__(self, predictor: Any, per_row: int) -> None:
        self.predictor = predictor
        self.per_row = per_row
        self._inputs: dict[str, list[np.ndarray]] = {}
        self._rows: list[tuple[int, int, np.ndarray | None]] = []
        self._done: list[np.ndarray] = []

    def add(
        self, k: int, inputs: dict[str, list[np.ndarray]], keep: np.ndarray | None = None
    ) -> list[ReadyRow]:
        """Queue window row ``k`` (only its windows where ``keep`` is True)."""
        if keep is not None:
            inputs = {
                name: [w for w, kept in zip(windows, keep, strict=True) if kept]
                for name, windows in inputs.items()
            }
        n = self.per_row if keep is None else int(np.count_nonzero(keep))
        for name, windows in inputs.items():
            self._inputs.setdefault(name, []).extend(windows)
        self._rows.append((k, n, keep))
        size = self.predictor.batch_size
        while self._inputs and len(next(iter(self._inputs.values()))) >= size:
            self._run(size)
        return self._complete_rows()

    def flush(self) -> list[ReadyRow]:
        pending = len(next(iter(self._inputs.values()), []))
        if pending:
            self._run(pending)
        return self._complete_rows()

    def _run(self, n: int) -> None:
        batch = {name: windows[:n] for name, windows in self._inputs.items()}
        self._inputs = {name: windows[n:] for name, windows in self._inputs.items()}
        try:
            probs = self.predictor.predict(batch)
        except BaseException as exc:
            if is_out_of_memory(exc):
                raise out_of_memory(exc, self.predictor.batch_size) from exc
            raise
        self._done.extend(probs)

    def _complete_rows(self) -> list[ReadyRow]:
        ready: list[ReadyRow] = []
        while self._rows and len(self._done) >= self._rows[0][1]:
            k, n, keep = self._rows.pop(0)
            ready.append((k, np.stack(self._done[:n]) if n else None, keep))
            self._done = self._done[n:]
        return ready


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a model call that ran out of memory: TensorFlow's ``ResourceExhaustedError``
    (matched by name, so that this module never imports TensorFlow) or a ``MemoryError``."""
    if isinstance(exc, OutOfMemoryError):
        return False
    return isinstance(exc, MemoryError) or any(
        cls.__name__ == "ResourceExhaustedError" for cls in type(exc).__mro__
    )


def out_of_memory(exc: BaseException, batch_size: int) -> OutOfMemoryError:
    """One line for a model call that did not fit in memory: the cause and the setting to lower."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    cause = message.strip().splitlines()[0][:200]
    if batch_size > 1:
        fix = (
            f"use smaller batches (--batch-size {max(1, batch_size // 2)}, or for deploy a "
            "smaller --activation-budget-mb) or a device with more memory"
        )
    else:
        fix = "even one window does not fit: use a device with more memory"
    return OutOfMemoryError(
        f"out of memory running the model on batches of {batch_size} windows ({cause}); {fix}"
    )


def window_loop(
    source: Iterable[WindowRow],
    *,
    grid: TileGrid,
    predictor: Predictor,
    timings: LoopTimings | None = None,
    bar: Progress | None = None,
    prefetch: int = 1,
    blend: str = "gaussian",
    selection: WindowSelection | None = None,
    n_classes: int | None = None,
) -> Iterator[BlendedRows]:
    """Predict and blend every window row of ``grid``; yield scene rows as they become final.

    ``blend``: the window weights (:data:`~glaviz.engine.tiling.BLEND_KINDS`).
    ``prefetch``: window rows the reader may run ahead of the model. ``timings`` is filled in as
    the loop runs; ``bar`` advances by the windows done. ``selection``: which windows to
    compute (None: all); pixels no computed window covers come out as NaN. ``n_classes``: the
    model's classes, needed only when a selection may leave every window out.
    """
    timings = LoopTimings() if timings is None else timings
    batches = CrossRowBatcher(predictor, len(grid.col_origins))
    rows = RowAssembler(grid, blend=blend, n_classes=n_classes)
    reader = Prefetcher(iter(source), depth=prefetch)
    waiting: deque[WindowRow] = deque()  # read, not yet decided by the selection
    started = time.perf_counter()
    try:
        t_wait = time.perf_counter()
        for item in reader:
            timings.wait_s += time.perf_counter() - t_wait
            rows.note(item.rows)
            if selection is not None:
                selection.note(item.rows)
            waiting.append(item)
            decided = _decidable(waiting, selection)
            yield from _compute(decided, selection, batches, rows, timings, bar)
            t_wait = time.perf_counter()
        if selection is not None:
            selection.finish()
        decided = _decidable(waiting, selection)
        yield from _compute(decided, selection, batches, rows, timings, bar)
        t = time.perf_counter()
        ready = batches.flush()
        timings.model_s += time.perf_counter() - t
        yield from rows.add(ready, timings, bar)
        yield from rows.finish()
    finally:
        reader.close()
        timings.loop_s += time.perf_counter() - started


def _compute(
    items: Iterable[WindowRow],
    selection: WindowSelection | None,
    batches: CrossRowBatcher,
    rows: RowAssembler,
    timings: LoopTimings,
    bar: Progress | None,
) -> Iterator[BlendedRows]:
    """Send the selected windows of ``items`` to the model; blend the rows that complete."""
    for item in items:
        keep = selection.keep(item.k) if selection is not None else None
        t = time.perf_counter()
        ready = batches.add(item.k, item.inputs, keep)
        timings.model_s += time.perf_counter() - t
        yield from rows.add(ready, timings, bar)


def _decidable(waiting: deque[WindowRow], selection: WindowSelection | None) -> Iterator[WindowRow]:
    """The waiting window rows whose selection can be decided now, in order."""
    while waiting and (selection is None or selection.ready(waiting[0].k)):
        yield waiting.popleft()


class RowAssembler:
    """Blends predicted window rows and pairs each finished block of scene rows with the facts
    the reader found for the same rows (their validity)."""

    def __init__(
        self, grid: TileGrid, *, blend: str = "gaussian", n_classes: int | None = None
    ) -> None:
        self.grid = grid
        self.blend = blend
        self.n_classes = n_classes
        self._blender: RowBlender | None = None
        self._pending = SceneRowQueue()
        self._with_rows = False
        self._early: list[ReadyRow] = []  # rows with nothing computed, before the classes are known

    def note(self, rows: SceneRows | None) -> None:
        """Hold the facts of newly read scene rows until their predictions are final."""
        if rows is not None:
            self._with_rows = True
            self._pending.put(rows)

    def add(
        self, ready: list[ReadyRow], timings: LoopTimings, bar: Progress | None
    ) -> Iterator[BlendedRows]:
        grid = self.grid
        per_row = len(grid.col_origins)
        for k, probs, keep in ready:
            t = time.perf_counter()
            blender = self._blender_for(probs)
            if blender is None:
                self._early.append((k, probs, keep))
                continue
            for early in self._early:
                self._add_row(blender, *early)
            self._early = []
            self._add_row(blender, k, probs, keep)
            done = blender.pop_finished()
            timings.blend_s += time.perf_counter() - t
            if bar is not None:
                bar.advance(per_row)
            if done is not None:
                yield self._pair(*done)

    def _blender_for(self, probs: np.ndarray | None) -> RowBlender | None:
        if self._blender is None:
            classes = probs.shape[-1] if probs is not None else self.n_classes
            if classes is None:
                return None
            self._blender = RowBlender(self.grid, classes, dtype=np.float64, blend=self.blend)
        return self._blender

    def _add_row(
        self, blender: RowBlender, k: int, probs: np.ndarray | None, keep: np.ndarray | None
    ) -> None:
        grid = self.grid
        n = len(grid.col_origins) if keep is None else int(np.count_nonzero(keep))
        shape = (n, grid.patch, grid.patch, blender.n_classes)
        blender.add_row(k, probs.reshape(shape) if probs is not None else np.zeros(shape), keep)

    def finish(self) -> Iterator[BlendedRows]:
        if self._blender is None:
            raise ConfigError(
                "internal: no window was computed and the model's classes are unknown"
            )
        done = self._blender.finish()
        if done is not None:
            yield self._pair(*done)

    def _pair(self, start: int, probs: np.ndarray) -> BlendedRows:
        rows = self._pending.take(start, len(probs)) if self._with_rows else None
        return BlendedRows(start, probs, rows)
