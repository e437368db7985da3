"""Where outputs go: the one "output exists" rule, and output folders written as one unit.

:func:`refuse_existing` is the rule every command applies before it writes: an existing output is
replaced only with ``--overwrite``, otherwise the run stops with :class:`OutputExistsError`
(exit 3). Commands described by a configuration model reach it through
:func:`glaviz.runs.records.prepare_outputs`, which adds ``--skip-existing``; engines that write a
single file call it directly.

:class:`OutputFolder` is a folder of several outputs (deploy's). Every output is written under a
hidden temporary name in the folder and renamed only when the whole run has succeeded,
``run.json`` last, so a killed run never leaves anything that looks finished. With
``--overwrite``, outputs of an earlier run that this run does not produce are removed at the
commit, so the folder never mixes two runs. A failed run removes its temporary files, and the
folder itself (and the parents it made) when the run created it. While a run writes, it holds an
exclusive lock on the folder (the file ``.glaviz.lock`` inside it, removed at the end): a second
run into the same folder fails at once instead of interleaving its files with the first.

Temporary and scratch names carry the writer's process id. A run killed with SIGKILL leaves them
behind; the next run that takes the lock removes those of processes that no longer exist, so a
re-run leaves the folder clean.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glaviz.errors import InputError, OutputExistsError, OutputLockedError
from glaviz.runs.atomic import remove_empty
from glaviz.util.leftovers import sweep_stale

LOCK_NAME = ".glaviz.lock"
#: Temporary (``.outlines.partial-PID.tif``) and scratch (``.outlines.tif.scratch-PID``) names of
#: an output folder, with GDAL's side files (``….aux.xml``, ``….ovr``).
_TEMP_NAME = re.compile(r"^\..+?\.(?:partial|scratch)-(?P<pid>\d+)(?:\..*)?$")
#: The record every output folder commits last.
RECORD_NAME = "run.json"


#: Temporary names of :mod:`glaviz.runs.atomic` (``.stack.tif.PID-….part``, files or folders).
_ATOMIC_NAME = re.compile(r"^\..+?\.(?P<pid>\d+)-.+\.part$")


def sweep_folder(outdir: Path) -> list[Path]:
    """Remove what killed runs left in ``outdir``: temporary and scratch files of processes that
    no longer exist, and a lock file that no live process holds. Returns what was removed.

    For a caller that knows the writers are gone (a batch after its workers stopped): the next
    writer sweeps too, but a user should not have to run again to get a clean folder.
    """
    outdir = Path(outdir)
    if not outdir.is_dir():
        return []
    removed = sweep_stale(outdir, _TEMP_NAME) + sweep_stale(outdir, _ATOMIC_NAME)
    lock_file = outdir / LOCK_NAME
    if lock_file.exists():
        from filelock import FileLock, Timeout

        lock = FileLock(lock_file, timeout=0)
        try:
            with lock:
                lock_file.unlink(missing_ok=True)
            removed.append(lock_file)
        except Timeout:
            pass  # a live run holds it
    return removed


def refuse_existing(
    path: str | os.PathLike[str],
    names: Sequence[str] = (),
    *,
    overwrite: bool,
    flag: str = "--overwrite",
) -> None:
    """Raise :class:`OutputExistsError` (exit 3) when an output exists, unless ``overwrite``.

    ``path`` is a file, or a folder whose ``names`` count as its outputs (other files in it are
    not this command's business). ``flag`` is the option that allows replacing it (``--force``
    for the caches of the fetch commands).
    """
    path = Path(path)
    if overwrite:
        return
    if names:
        existing = [n for n in names if (path / n).exists()]
        if existing:
            raise output_exists(
                path,
                f"already holds outputs ({', '.join(existing)})",
                fix=f"pass {flag} to replace them, or choose another output folder",
            )
    elif path.exists():
        raise output_exists(path, fix=f"pass {flag} to replace it")


def output_exists(
    path: str | os.PathLike[str], state: str = "exists", *, fix: str
) -> OutputExistsError:
    """The error for an output in the way: what is there and how to proceed, one line, exit 3.

    For the cases :func:`refuse_existing` cannot decide alone (a cached file with other content,
    a folder holding another training run), so every such message has the same shape.
    """
    return OutputExistsError(f"{path} {state}; {fix}")


class OutputFolder:
    """The files of one run in ``outdir`` and their temporary stand-ins.

    ``names`` are every output the command can write there, so an ``--overwrite`` run removes
    those of an earlier run it does not write again. Use as a context manager: entering creates
    (and locks) the folder, leaving with an error removes the temporary files and the folders this
    run created.
    """

    def __init__(
        self, outdir: Path, names: Sequence[str], *, overwrite: bool, command: str = "glaviz"
    ) -> None:
        self.outdir = Path(outdir)
        self.names = tuple(names)
        self.overwrite = overwrite
        self.command = command
        self._temps: dict[str, Path] = {}
        self._scratch: list[Path] = []
        self._created: list[Path] = []
        self._lock: Any = None
        #: Leftovers of killed runs removed when the lock was taken.
        self.swept: list[Path] = []

    def __enter__(self) -> OutputFolder:
        if self.outdir.exists() and not self.outdir.is_dir():
            raise InputError(f"output folder {self.outdir} exists and is not a folder")
        refuse_existing(self.outdir, self.names, overwrite=self.overwrite)
        missing = [p for p in (self.outdir, *self.outdir.parents) if not p.exists()]
        self.outdir.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first: removed in this order after a failure
        try:
            self._acquire_lock()
        except BaseException:
            self._remove_created()
            raise
        self.swept = sweep_stale(self.outdir, _TEMP_NAME)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.cleanup()
        self._release_lock()
        if exc_type is not None:
            self._remove_created()

    def _acquire_lock(self) -> None:
        from filelock import FileLock, Timeout

        lock = FileLock(self.outdir / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise OutputLockedError(
                f"another glaviz {self.command} is writing into {self.outdir} (it holds "
                f"{self.outdir / LOCK_NAME}); wait for it to finish or choose another -o folder"
            ) from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            (self.outdir / LOCK_NAME).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def _remove_created(self) -> None:
        remove_empty(self._created)  # only when empty: never removes anything else
        self._created = []

    def temp(self, name: str) -> Path:
        """A hidden temporary path for output ``name`` (same folder, so rename is atomic)."""
        stem, dot, ext = name.partition(".")
        path = self.outdir / f".{stem}.partial-{os.getpid()}{dot}{ext}"
        self._temps[name] = path
        return path

    def scratch(self, name: str) -> Path:
        """A hidden working file in the folder that is never committed (removed on failure)."""
        path = self.outdir / f".{name}.scratch-{os.getpid()}"
        self._scratch.append(path)
        return path

    def write_record(self, record: dict[str, Any]) -> None:
        """Write the run record among the outputs, with the sizes of every output written so far
        (the record is written last and committed last, so that is all of them)."""
        from glaviz.runs.records import write_record

        outputs = {n: p for n, p in self._temps.items() if n != RECORD_NAME}
        write_record(self.temp(RECORD_NAME), record, atomic=False, outputs=outputs)

    def commit(self) -> list[Path]:
        """Rename every temporary output to its final name (the record last); drop stale ones."""
        order = sorted(self._temps, key=lambda n: n == RECORD_NAME)
        for name in self.names:
            if name not in self._temps:
                (self.outdir / name).unlink(missing_ok=True)
        final = []
        for name in order:
            target = self.outdir / name
            os.replace(self._temps[name], target)
            final.append(target)
        self._temps.clear()
        return final

    def cleanup(self) -> None:
        """Remove temporary files after a failure (and GDAL side files next to them)."""
        for path in [*self._temps.values(), *self._scratch]:
            for candidate in (path, path.with_name(path.name + ".aux.xml")):
                candidate.unlink(missing_ok=True)
        self._temps.clear()
        self._scratch.clear()
