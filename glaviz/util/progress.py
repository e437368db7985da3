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
    ``status=True`` adds a text column set with :meth:`status` (training shows the loss there).
    :meth:`reset` starts the bar again (a new epoch, a resumed download); :meth:`print` writes a
    line above it (an epoch summary).
    """

    def __init__(
        self,
        enabled: bool,
        *,
        total: int | None,
        description: str,
        rate_unit: str | None = None,
        transfer: bool = False,
        status: bool = False,
    ) -> None:
        self._bar: Any = None
        self._console: Any = None
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
            if status:
                columns.append(TextColumn("{task.fields[status]}"))
            columns.append(TimeRemainingColumn())
            self._console = Console(stderr=True)
            self._bar = RichProgress(*columns, console=self._console, transient=True)
            self._task = self._bar.add_task(description, total=total, rate="", status="")

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

    def status(self, text: str) -> None:
        """Set the text of the ``status=True`` column."""
        if self._bar is not None:
            self._bar.update(self._task, status=text)

    def reset(
        self, *, total: int | None, completed: int = 0, description: str | None = None
    ) -> None:
        """Start counting again: the next epoch, or a download resuming at ``completed`` bytes."""
        self._done = completed
        self._start = time.perf_counter()
        if self._bar is not None:
            fields: dict[str, Any] = {} if description is None else {"description": description}
            self._bar.reset(
                self._task, total=total, completed=completed, rate="", status="", **fields
            )

    def print(self, line: str) -> None:
        """A line on stderr above the bar (only when the bar is shown)."""
        if self._console is not None:
            self._console.print(line, highlight=False)

    def advance(self, steps: int = 1) -> None:
        self._done += steps
        if self._bar is None:
            return
        fields: dict[str, Any] = {}
        if self._rate_unit:
            rate = self._done / max(time.perf_counter() - self._start, 1e-9)
            fields["rate"] = f"{rate:.2f} {self._rate_unit}/s"
        self._bar.update(self._task, advance=steps, **fields)
