"""Files named after the process that writes them, so that what a killed process left is known.

A process killed with SIGKILL runs no cleanup. glaviz therefore puts the writer's process id in
every temporary name (output temporaries, scratch folders, the private temp folder of a process
that runs TensorFlow); whoever comes next removes the entries of processes that no longer exist.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Remove entries of ``folder`` whose name matches ``pattern`` and whose writer is gone.

    ``pattern``'s group ``pid`` is the writer's process id; the entries of live processes (this
    one included) are left alone. Returns what was removed.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or pid_alive(int(match.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


#: The private temp folders of :func:`use_private_tempdir`, in the system temp folder.
_PRIVATE = re.compile(r"^glaviz-(?P<pid>\d+)-[^/]+$")


def use_private_tempdir() -> Path:
    """Point this process's ``tempfile`` at a folder of its own, removed when it exits.

    TensorFlow's autograph writes the source of every traced function to
    ``__autograph_generated_file*.py`` in the temp folder and removes it only at a clean exit; a
    killed deploy or batch worker left them in /tmp for good. Here they land in
    ``glaviz-PID-…``, which goes at exit, and which the next glaviz process sweeps when PID is
    gone. Idempotent: a second call returns the folder of the first.
    """
    current = Path(tempfile.gettempdir())
    if _PRIVATE.match(current.name) and current.name.startswith(f"glaviz-{os.getpid()}-"):
        return current
    sweep_stale(current, _PRIVATE)
    private = Path(tempfile.mkdtemp(prefix=f"glaviz-{os.getpid()}-", dir=current))
    tempfile.tempdir = str(private)
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    return private


@contextlib.contextmanager
def process_folder(parent: Path, name: str) -> Iterator[Path]:
    """A hidden working folder ``.NAME-PID-…`` in ``parent`` for this process, removed at the end.

    The same folders of processes that are gone are swept first, so a killed run's working
    files do not outlive the next run in the same place.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(parent, re.compile(rf"^\.{re.escape(name)}-(?P<pid>\d+)-.+$"))
    folder = Path(tempfile.mkdtemp(prefix=f".{name}-{os.getpid()}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
