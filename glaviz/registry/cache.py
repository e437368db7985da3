"""The local weights cache: where it is, what each model's file is called, locks and records.

Layout under ``$GLAVIZ_HOME`` (default: the platform's user cache directory)::

    weights/<published file name>            verified checkpoint, only ever created by a rename
    weights/<published file name>.info.json  what verification found (sha256, size, feature
                                             groups, …): also the trust-on-first-use record
    weights/<published file name>.part       an interrupted download, resumed by the next fetch
    locks/<published file name>.lock         inter-process lock for that one file

Locks live outside ``weights/`` so that the weights folder holds nothing but real files.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from glaviz.errors import DownloadError
from glaviz.runs import atomic

HOME_ENV = "GLAVIZ_HOME"
INFO_SUFFIX = ".info.json"
PART_SUFFIX = ".part"

#: Seconds a fetch waits for another process that is downloading the same file.
LOCK_TIMEOUT_S = 6 * 3600.0


class Published(Protocol):
    """Anything with a published file name (a registry entry). The cache needs nothing else, so it
    does not import the registry, and the registry can import the cache."""

    @property
    def file(self) -> str: ...


def glaviz_home() -> Path:
    """``$GLAVIZ_HOME`` if set, else the per-user cache directory chosen by platformdirs."""
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("glaviz"))


def weights_dir(home: Path | None = None) -> Path:
    return (home or glaviz_home()) / "weights"


def cached_path(entry: Published, *, home: Path | None = None) -> Path:
    """The one cache file of ``entry``: its published file name, never shared with another entry."""
    return weights_dir(home) / entry.file


def part_path(target: Path) -> Path:
    return target.with_name(target.name + PART_SUFFIX)


def info_path(target: Path) -> Path:
    return target.with_name(target.name + INFO_SUFFIX)


def lock_path(target: Path) -> Path:
    return target.parent.parent / "locks" / f"{target.name}.lock"


@contextlib.contextmanager
def locked(target: Path, *, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the inter-process lock of one cache file (and create the cache folders).

    Two ``glaviz fetch-weights`` runs for the same model serialise here; the second then finds the
    finished file instead of writing over a download in progress.
    """
    import filelock

    target.parent.mkdir(parents=True, exist_ok=True)
    lock_file = lock_path(target)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(lock_file), timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise DownloadError(
            f"another glaviz process has held the lock {lock_file} for over {timeout:.0f} s; "
            "if no other fetch is running, delete that file and retry"
        ) from None
    try:
        yield
    finally:
        lock.release()


def plain_file_name(value: str, *, suffixes: tuple[str, ...] = ()) -> str:
    """``value`` when it is a bare file name, for names read from data files (the registry, the
    archive listing) that become paths in a local folder: they must not escape it.

    Raises ``ValueError`` (a pydantic validator's way to fail) otherwise, or when ``suffixes``
    are given and the name ends in none of them.
    """
    plain = bool(value) and "/" not in value and "\\" not in value and not value.startswith(".")
    if not plain or (suffixes and not value.endswith(suffixes)):
        kinds = " or ".join(f"'<name>{s}'" for s in suffixes) + " " if suffixes else ""
        raise ValueError(f"{value!r} is not a plain {kinds}file name")
    return value


def temp_in(folder: Path, name: str) -> Path:
    """A fresh hidden temporary path next to the final file, so the final rename is atomic."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.chmod(tmp, atomic.default_mode())  # mkstemp makes 0600; cached weights are shareable
    return Path(tmp)


def read_info(target: Path) -> dict[str, Any] | None:
    """The verification record of a cached file, or None when absent or stale.

    A record whose size differs from the file, or that is older than the file, belongs to an
    earlier file (replaced by hand, perhaps by one of the same size), so it is ignored rather than
    trusted: the record is always written after the file it describes.
    """
    path = info_path(target)
    try:
        info = json.loads(path.read_text(encoding="utf8"))
        st = target.stat()
        if not isinstance(info, dict) or info.get("size") != st.st_size:
            return None
        if st.st_mtime_ns > path.stat().st_mtime_ns:
            return None
        return info
    except (OSError, ValueError):
        return None


def read_record(target: Path) -> dict[str, Any] | None:
    """The verification record of ``target`` whether or not the file is still there or unchanged.

    This is the trust-on-first-use record: the sha256 and size of the file that was first
    installed under this name, which every later fetch or import of the same model must match
    (unless the user pins another digest on purpose). :func:`read_info` answers a different
    question (what is known about the file now in the cache), so it ignores a stale record; this
    one must not, or replacing the cached file by hand would silently reset the trust. A record
    without a well-formed sha256 is no record.
    """
    try:
        info = json.loads(info_path(target).read_text(encoding="utf8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    digest = info.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
        return None
    return info


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def remove_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
