"""Downloading the published datasets: resumable, md5-verified, atomic, with a free-space check.

The files are large (up to 243 GB), so every step is built for interruption: a file is written to
``<name>.part`` in the target folder and resumed with HTTP range requests (by the next run too);
only a complete file whose md5 matches the archive's table of contents is renamed to its name. A
wrong md5 deletes the download, so nothing that looks like the dataset is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from glaviz.errors import ConfigError, DownloadError
from glaviz.registry.archive import Archive, ArchiveFile, load_archive
from glaviz.registry.cache import part_path, remove_quietly
from glaviz.registry.download import (
    DEFAULT_POLICY,
    RetryPolicy,
    discard_partial,
    download,
    note_kept_partial,
)
from glaviz.runs.outputs import output_exists
from glaviz.util.hashing import file_digest

DATASET_URL_ENV = "GLAVIZ_DATASET_URL"


@dataclass(frozen=True)
class DatasetResult:
    """What happened to one file: downloaded (and md5-checked), or already there."""

    file: ArchiveFile
    path: Path
    status: Literal["downloaded", "present"]
    source: str | None


@dataclass(frozen=True)
class FileStatus:
    """One row of ``fetch-dataset --list``: the file and how much of it is in the folder."""

    file: ArchiveFile
    path: Path
    present: bool
    partial_bytes: int


def base_url(override: str | None = None, archive: Archive | None = None) -> str:
    """The download folder: ``--base-url``, else ``$GLAVIZ_DATASET_URL``, else the NIRD archive."""
    base = override if override is not None else os.environ.get(DATASET_URL_ENV, "")
    base = base.strip()
    if not base:
        return (archive or load_archive()).base_url
    if not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"dataset mirror {base!r} is not an http(s):// URL; fix --base-url or "
            f"${DATASET_URL_ENV}"
        )
    return base.rstrip("/")


def free_bytes(folder: Path) -> int:
    """Free space where ``folder`` lives (its nearest existing ancestor)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _partial(target: Path) -> int:
    part = part_path(target)
    return part.stat().st_size if part.is_file() else 0


def status(files: list[ArchiveFile], folder: Path) -> list[FileStatus]:
    """Which of ``files`` are complete in ``folder`` (size check only), and partial downloads."""
    rows = []
    for file in files:
        target = folder / file.name
        present = target.is_file() and target.stat().st_size == file.size
        rows.append(FileStatus(file, target, present, _partial(target)))
    return rows


def check_space(files: list[ArchiveFile], folder: Path) -> None:
    """Refuse to start when the folder's file system cannot hold what is still to download."""
    needed = sum(f.size - _partial(folder / f.name) for f in files)
    free = free_bytes(folder)
    if needed > free:
        raise DownloadError(
            f"not enough free space in {folder}: {len(files)} file(s) need {needed:,} bytes "
            f"({needed / 1e9:.1f} GB) more, and {free:,} bytes ({free / 1e9:.1f} GB) are free; "
            "free some space or choose another folder with --to"
        )


@contextlib.contextmanager
def exclusive(target: Path) -> Iterator[None]:
    """Refuse a second process writing the same ``.part`` (it would interleave two downloads).

    The lock file sits beside the download as ``.<name>.lock`` and is removed afterwards.
    """
    import filelock

    lock_file = target.with_name(f".{target.name}.lock")
    lock = filelock.FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise DownloadError(
            f"another glaviz fetch-dataset is downloading {target.name} into {target.parent} "
            f"(lock {lock_file}); wait for it, or delete the lock if no such run is active"
        ) from None
    try:
        yield
    finally:
        lock.release()
        remove_quietly(lock_file)


def fetch_files(
    files: list[ArchiveFile],
    *,
    to: Path,
    mirror: str | None = None,
    force: bool = False,
    progress: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> list[DatasetResult]:
    """Download ``files`` into ``to`` (resuming any ``.part``), verify each md5, rename into place.

    A file already there with the archive's size is kept (``force`` downloads it again); a file of
    another size under that name is refused rather than overwritten. The free space is checked for
    all files before the first byte is fetched.
    """
    archive = load_archive()
    root = base_url(mirror, archive)
    to = to.expanduser()
    todo: list[ArchiveFile] = []
    results: dict[str, DatasetResult] = {}
    for file in files:
        target = to / file.name
        if target.is_file() and not force:
            size = target.stat().st_size
            if size != file.size:
                raise output_exists(
                    target,
                    f"exists with {size:,} bytes, but the archive's {file.name} has {file.size:,}",
                    fix="move it away, or pass --force to download it again",
                )
            results[file.name] = DatasetResult(file, target, "present", None)
            continue
        if force:
            discard_partial(part_path(target))
        todo.append(file)
    check_space(todo, to)
    created = not to.exists()
    to.mkdir(parents=True, exist_ok=True)
    target: Path | None = None
    try:
        for index, file in enumerate(todo, start=1):
            url = f"{root}/{file.name}"
            label = f"{file.name} ({index}/{len(todo)})"
            target = to / file.name
            _fetch_one(file, url, target, label=label, policy=policy, progress=progress)
            results[file.name] = DatasetResult(file, target, "downloaded", url)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and target is not None:
            # ^C, or SIGTERM raised as one by the CLI: the .part stays for resuming (that is
            # its point), so the message must say so rather than "nothing was left behind".
            note_kept_partial(exc, part_path(target), "the next run of the same command")
        if created:  # a folder this run made stays only if it holds something to resume
            with contextlib.suppress(OSError):
                to.rmdir()
        raise
    return [results[f.name] for f in files]


def _fetch_one(
    file: ArchiveFile, url: str, target: Path, *, label: str, policy: RetryPolicy, progress: bool
) -> None:
    """Download, md5-check and rename one file; a wrong md5 leaves nothing behind."""
    part = part_path(target)
    with exclusive(target):
        download(url, part, policy=policy, progress=progress, label=label)
        size = part.stat().st_size
        digest = file_digest(part, "md5", progress=progress) if size == file.size else None
        if digest != file.md5:
            discard_partial(part)
            found = f"md5 {digest}" if digest else f"{size:,} bytes"
            raise DownloadError(
                f"{url} gave {found}, but the archive lists {file.name} with md5 {file.md5} "
                f"({file.size:,} bytes); the download was deleted, nothing was kept; run the "
                "command again, or check the mirror"
            )
        os.replace(part, target)
        discard_partial(part)  # the resume record
