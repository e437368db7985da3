"""Atomic outputs: write under a hidden temporary name in the target folder, rename at the end.

An interrupted or failed command must never leave a file that looks complete. Writing beside the
target (same file system) makes the final ``os.replace`` atomic. ``mkstemp`` creates files readable
by their owner only, so the finished file gets the permissions a plain ``open`` would have given
(0666 minus the umask).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def default_mode() -> int:
    """The permissions ``open(path, "w")`` would give a new file: 0666 minus the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` on success, else is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], data: Any, **dumps: Any) -> Path:
    """Write ``data`` as JSON (indented, newline-terminated) to ``path`` atomically."""
    options = {"indent": 2, **dumps}
    return write_text_atomic(path, json.dumps(data, **options) + "\n")
