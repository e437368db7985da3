"""File checksums: one chunked reader for the sha256 of weights and the md5 of datasets.

Weights files reach a few hundred MB and benchmark files 243 GB, so files are read in chunks
(never whole), with an optional byte progress bar for the long ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from glaviz.util.progress import Progress


def file_digest(
    path: str | Path,
    algorithm: str = "sha256",
    *,
    progress: bool = False,
    chunk_size: int = 1 << 22,
) -> str:
    """Hex digest of a file (``sha256``, or ``md5`` for the archive's published checksums)."""
    path = Path(path)
    # md5 only checks integrity against the archive's listing; it protects nothing.
    digest = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    bar = Progress(
        progress, total=path.stat().st_size, description=f"{algorithm} {path.name}", transfer=True
    )
    with bar, path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
            bar.advance(len(chunk))
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    return file_digest(path, "sha256")
