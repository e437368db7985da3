"""Whether outputs can be written, and one clear error when a write fails anyway.

Writing can fail for reasons that are no bug: a read-only folder, a full disk. A command checks
what it can before it starts (:func:`require_writable`, :func:`require_disk_space`), and every
write that fails later becomes one :class:`~glaviz.errors.OutputWriteError` line that names the
file, the cause and the fix (:func:`write_error`), with the cause dug out of rasterio's wrapping
or out of what libtiff printed (:class:`glaviz.util.stderr.NativeStderr`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from glaviz.errors import GlavizError, InputError, OutputWriteError
from glaviz.util.units import format_bytes


def existing_folder(path: Path) -> Path:
    """``path`` or its nearest existing parent: where a folder about to be made will live."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_writable(outdir: Path) -> Path:
    """Refuse an output folder (or, when it does not exist yet, the parent it would be made in)
    that this process cannot write into; returns that existing folder."""
    folder = existing_folder(outdir)
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise OutputWriteError(
            f"cannot write into {folder}: permission denied (a read-only folder); "
            "choose a writable output folder with -o"
        )
    return folder


def require_disk_space(outdir: Path, needed: int, *, command: str = "deploy") -> None:
    """Refuse to start when the disk of ``outdir`` has less than ``needed`` bytes free.

    An :class:`InputError` (exit code 1): this scene is too large for this disk. The message gives
    both numbers, so the user knows how much to free, and nothing has been written yet.
    """
    folder = existing_folder(outdir)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # no figure (an unusual file system): the writes report a full disk themselves
    if free < needed:
        raise InputError(
            f"{command} needs about {format_bytes(needed)} of disk space in {folder} for this "
            f"scene (streamed files and Cloud-Optimised GeoTIFFs), but only {format_bytes(free)} "
            "is free; free some space or write elsewhere with -o"
        )


#: Causes with a fix of their own: a full disk (or quota), and a folder that cannot be written.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def gdal_cause(exc: BaseException | None) -> str:
    """The most specific message in ``exc``'s chain: rasterio wraps GDAL's own error in a
    generic "Write failed. See previous exception for details."."""
    messages = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).strip()
        if isinstance(exc, OSError) and exc.strerror:
            text = exc.strerror
        if text and "see previous exception" not in text.lower():
            messages.append(text.rstrip("."))
        exc = exc.__cause__ or exc.__context__
    return messages[-1] if messages else "unknown error"


def _errno_of(exc: BaseException | None, native: str) -> int | None:
    """The errno behind a failed write, from the exception chain or libtiff's own lines."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (*_FULL, *_DENIED):
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    for code in (*_FULL, *_DENIED):
        if os.strerror(code) in native:
            return code
    if "bytes necessary" in native or "disk space" in native.lower():
        return errno.ENOSPC
    return None


def write_error(
    path: Path, exc: BaseException | None, native: str = "", *, what: str | None = None
) -> OutputWriteError:
    """One :class:`OutputWriteError` line for a failed write of ``path``: what, why, the fix.

    ``native`` is what libtiff printed meanwhile (its line is the real cause when rasterio only
    says "Write failed"); ``what`` names ``path`` when it is not a file (``the output folder``).
    """
    lines = [line.strip() for line in native.splitlines() if line.strip()]
    code = _errno_of(exc, native)
    cause = lines[-1].rstrip(".") if lines else gdal_cause(exc)
    if code is None and exc is not None:
        code = _errno_of(None, gdal_cause(exc))
    name = f"{what} {path}" if what else str(path)
    if code in _FULL:
        free = ""
        with contextlib.suppress(OSError):
            free = f" ({format_bytes(shutil.disk_usage(existing_folder(path)).free)} free)"
        return OutputWriteError(
            f"cannot write {name}: no space left on the disk{free}; free some space or write "
            "elsewhere with -o"
        )
    if code in _DENIED:
        return OutputWriteError(
            f"cannot write {name}: {cause} (a read-only folder or file system); choose a "
            "writable output folder with -o"
        )
    return OutputWriteError(
        f"cannot write {name}: {cause}; check the disk and the output folder, or write "
        "elsewhere with -o"
    )


def is_write_failure(exc: BaseException) -> bool:
    """True for an exception that reports a failed write rather than a bug: an OSError
    (rasterio's RasterioIOError is one) or an error of a library that writes deploy's files."""
    if isinstance(exc, GlavizError):
        return False
    if isinstance(exc, OSError):
        return True
    module = type(exc).__module__ or ""
    return module.startswith(("rasterio", "pyogrio", "fiona", "PIL"))
