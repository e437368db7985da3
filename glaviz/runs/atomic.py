"""Atomic outputs: write under a hidden temporary name in the target folder, rename at the end.

An interrupted or failed command must never leave a file that looks complete, nor anything else:
not the temporary file, not the folders it created for the output. Writing beside the target (same
file system) makes the final ``os.replace`` atomic. ``mkstemp`` creates files readable by their
owner only, so the finished file gets the permissions a plain ``open`` would have given (0666 minus
the umask).

A process killed with SIGKILL cannot clean up after itself. Every temporary name therefore carries
the writer's process id, and the next writer of the same target removes the leftovers of processes
that no longer exist (:func:`glaviz.util.leftovers.sweep_stale`) before it starts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glaviz.errors import GlavizError
from glaviz.runs.writes import write_error
from glaviz.util.leftovers import sweep_stale


def default_mode() -> int:
    """The permissions ``open(path, "w")`` would give a new file: 0666 minus the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def temp_prefix(target: Path) -> str:
    """The start of every temporary name of ``target``: hidden, and naming this process."""
    return f".{target.name}.{os.getpid()}-"


def _stale_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.(?P<pid>\d+)-.+$")


@contextlib.contextmanager
def created_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``folder`` and its missing parents; on failure remove those this call created.

    Only empty folders are removed, deepest first, so nothing that another process put there in
    the meantime is lost.
    """
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_empty(missing)
        raise write_error(folder, exc, what="the folder") from exc
    try:
        yield folder
    except BaseException:
        remove_empty(missing)
        raise


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` on success, else is removed
    (with the folders created for it)."""
    target = Path(path)
    with created_folder(target.parent):
        sweep_stale(target.parent, _stale_pattern(target))
        with _writing(target):
            fd, name = tempfile.mkstemp(
                prefix=temp_prefix(target), suffix=suffix, dir=target.parent
            )
        os.close(fd)
        tmp = Path(name)
        try:
            with _writing(target, only_disk=True):
                yield tmp
            with _writing(target):
                os.chmod(tmp, default_mode())
                os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def scratch_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A hidden working folder beside ``path``, removed at the end whatever happens.

    For outputs that GDAL writes with side files: build them in here, then rename the finished
    file to ``path`` (same file system, so the rename is atomic). The folders created for ``path``
    are removed again when the work fails.
    """
    target = Path(path)
    with created_folder(target.parent):
        sweep_stale(target.parent, _stale_pattern(target))
        with _writing(target):
            scratch = Path(
                tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".part", dir=target.parent)
            )
        try:
            with _writing(target, only_disk=True):
                yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


#: Errors of the work inside an atomic write that are about the disk, not about the work's inputs.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


@contextlib.contextmanager
def _writing(target: Path, *, only_disk: bool = False) -> Iterator[None]:
    """One :class:`~glaviz.errors.OutputWriteError` line for a failed write of ``target``.

    ``only_disk``: for the caller's own work inside an atomic write, where an ``OSError`` may be
    about an input (a missing file) and must keep its own words; only a full disk, a quota, a
    too-large file or a read-only file system become a write error of ``target``.
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, GlavizError) or (only_disk and exc.errno not in _DISK_ERRNOS):
            raise
        raise write_error(target, exc) from exc


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], data: Any, **dumps: Any) -> Path:
    """Write ``data`` as JSON (indented, newline-terminated) to ``path`` atomically."""
    options = {"indent": 2, **dumps}
    return write_text_atomic(path, json.dumps(data, **options) + "\n")
