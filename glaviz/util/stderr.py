"""File descriptor 2: what native libraries (GDAL, libtiff, TensorFlow's C++ runtime) print there.

Native code writes straight to the process's standard error, past Python's ``sys.stderr``, so
neither logging nor rasterio's error handlers can silence or catch it. Two tools: :func:`silenced`
points descriptor 2 at /dev/null for a noisy import; :class:`NativeStderr` keeps what a block
printed, so that a library's own failure line can become the cause of one glaviz error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

#: ``strerror`` texts that mean a write did not reach the disk, whoever printed them.
WRITE_FAILURES = tuple(
    os.strerror(code)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EACCES)
)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Point descriptor 2 at /dev/null for the duration (restored afterwards)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class NativeStderr:
    """Catches what native libraries print on file descriptor 2 while GDAL writes.

    libtiff reports a failed write (a full disk) on standard error with no exception, and a
    failure while a file is closed only there. Inside :meth:`capture`, descriptor 2 points at a
    scratch file: lines that report a failed write are kept as the cause (:attr:`failure`), and
    anything else is written back to the real standard error afterwards, so nothing is lost.
    """

    def __init__(self) -> None:
        try:
            # Open for the writer's life (one file, truncated per capture); close() closes it.
            self._file: Any = tempfile.TemporaryFile()  # noqa: SIM115
        except OSError:  # no temporary folder: catch nothing rather than fail the run
            self._file = None
        self.text = ""

    @property
    def failure(self) -> str:
        """The captured lines that report a failed write ('' when none)."""
        lines = self.text.splitlines()
        bad = [line for line in lines if any(t in line for t in WRITE_FAILURES)]
        bad += [line for line in lines if "_tiffWriteProc" in line and line not in bad]
        return "\n".join(bad)

    @contextlib.contextmanager
    def capture(self) -> Iterator[NativeStderr]:
        """Point descriptor 2 at the scratch file for the duration (see the class docstring)."""
        self.text = ""
        if self._file is None:
            yield self
            return
        sys.stderr.flush()
        saved = os.dup(2)
        self._file.seek(0)
        self._file.truncate()
        os.dup2(self._file.fileno(), 2)
        try:
            yield self
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            self._file.seek(0)
            self.text = self._file.read().decode(errors="replace")

    def replay(self) -> None:
        """Write what was captured and is not a write failure back to standard error."""
        failure = set(self.failure.splitlines())
        rest = [line for line in self.text.splitlines() if line not in failure]
        if rest:
            os.write(2, ("\n".join(rest) + "\n").encode())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
