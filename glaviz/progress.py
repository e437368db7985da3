"""One progress bar for every long-running engine: rich on stderr, or nothing.

Engines stay silent unless the CLI asks (``progress=True`` only on an interactive terminal), so
scripts and batch jobs get clean output.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """``with Progress(enabled, total=n, description=…) as bar: bar.advance()``.

    ``rate_unit`` (e.g. ``"windows"``) adds a live ``… windows/s`` column. ``transfer=True`` counts
    bytes instead: size done/total, transfer rate and time left (downloads, checksums).
    """

    def __init__(
        self,
        enabled: bool,
        *,
        total: int | None,
        description: str,
        rate_unit: str | None = None,
        transfer: bool = False,
    ) -> None:
        self._bar: Any = None
        self._rate_unit = rate_unit
        self._done = 0
        self._start = time.perf_counter()
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
            if transfer:
                from rich.progress import DownloadColumn, TransferSpeedColumn

                columns += [DownloadColumn(), TransferSpeedColumn()]
            else:
                columns.append(MofNCompleteColumn())
            if rate_unit and not transfer:
                columns.append(TextColumn("{task.fields[rate]}"))
            columns.append(TimeRemainingColumn())
            self._bar = RichProgress(*columns, console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task(description, total=total, rate="")

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._start = time.perf_counter()
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def reset(self, *, total: int | None, completed: int = 0) -> None:
        """Start counting again, e.g. when a download resumes at ``completed`` bytes."""
        self._done = completed
        self._start = time.perf_counter()
        if self._bar is not None:
            self._bar.reset(self._task, total=total, completed=completed)

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        if self._bar is None:
            return
        fields: dict[str, Any] = {}
        if self._rate_unit:
            rate = self._done / max(time.perf_counter() - self._start, 1e-9)
            fields["rate"] = f"{rate:.2f} {self._rate_unit}/s"
        self._bar.update(self._task, advance=steps, **fields)
