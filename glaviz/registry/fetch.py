"""Fetching published weights into the cache: download or import, verify, then rename into place.

Sources, in order: a mirror (``--base-url`` or ``$GLAVIZ_WEIGHTS_URL``), an entry's own ``urls``,
then the authors' public Google Drive folder (by the entry's file id, else by its file name in the
folder listing). The first source that yields a file decides: a file that fails verification is
an error, not a reason to try the next source; so is a source that fails mid-file (its `.part` is
resumed from it by the next fetch, never spliced with bytes from another source).

Every path into the cache goes through the same three steps, under the file's inter-process lock:
write to a temporary file in the cache folder, verify it (sha256 when the registry pins one, and
always a full load into the GlaViTU architecture with every tensor's shape checked), then
``os.replace`` it onto the published file name. A file that fails verification is deleted, so the
cache only ever holds files that load.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

from glaviz.errors import (
    ConfigError,
    DownloadError,
    GlavizError,
    InputError,
    WeightsError,
)
from glaviz.registry.cache import (
    cached_path,
    info_path,
    locked,
    part_path,
    read_info,
    remove_quietly,
    temp_in,
)
from glaviz.registry.catalogue import ModelEntry, load_registry, packaged_path
from glaviz.registry.download import DEFAULT_POLICY, RetryPolicy, discard_partial, download
from glaviz.registry.drive import download_file, drive_url, find_file, html_page, refusal
from glaviz.runs.atomic import write_json_atomic
from glaviz.runs.outputs import output_exists
from glaviz.util.hashing import sha256_file

logger = logging.getLogger(__name__)

WEIGHTS_URL_ENV = "GLAVIZ_WEIGHTS_URL"

Status = Literal["downloaded", "imported", "cached", "packaged"]


@dataclass(frozen=True)
class FetchResult:
    """What one fetch did: where the file is, how it got there, and its digest when computed."""

    entry: ModelEntry
    path: Path
    status: Status
    source: str | None
    size: int
    sha256: str | None


@dataclass(frozen=True)
class CacheStatus:
    """One row of ``fetch-weights --list``."""

    entry: ModelEntry
    path: Path
    cached: bool
    size: int | None
    packaged: bool
    sha256: str | None = None  # recorded when the file was verified; pinned for packaged files


# --------------------------------------------------------------------------------------------------
# Sources


def _entry(model: str | ModelEntry) -> ModelEntry:
    return model if isinstance(model, ModelEntry) else load_registry().require(model)


def _local_dir(base: str) -> Path | None:
    """A mirror given as a folder (``/mnt/share`` or ``file:///mnt/share``), else None."""
    parts = urlsplit(base)
    if parts.scheme == "file":
        return Path(url2pathname(parts.path))
    if not parts.scheme or (len(parts.scheme) == 1 and os.name == "nt"):  # C:\ on Windows
        return Path(base).expanduser()
    return None


def mirror_source(base_url: str, file: str) -> str:
    """The mirror's copy of ``file``: the file name appended to the base URL (or folder)."""
    base = base_url.strip()
    local = _local_dir(base)
    if local is not None:
        return str(local / file)
    scheme = urlsplit(base).scheme
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"mirror {base_url!r} is not an http(s):// or file:// URL or a folder; "
            "fix --base-url or $GLAVIZ_WEIGHTS_URL"
        )
    return base.rstrip("/") + "/" + quote(file)


@dataclass(frozen=True)
class Source:
    """One place to get a model from: a mirror or direct URL, or the Drive (id, or by name)."""

    kind: Literal["mirror", "url", "drive"]
    location: str  # URL or folder path; for "drive" the file id, "" to find it by name


def sources(entry: ModelEntry, base_url: str | None = None) -> list[Source]:
    """Where to get ``entry``, in order: the mirror, the entry's own urls, the Google Drive."""
    base = base_url if base_url is not None else os.environ.get(WEIGHTS_URL_ENV, "")
    found = []
    if base and base.strip():
        found.append(Source("mirror", mirror_source(base, entry.file)))
    found += [Source("url", url) for url in entry.urls]
    found.append(Source("drive", entry.drive_id or ""))
    return found


# --------------------------------------------------------------------------------------------------
# Verification


def verify_weights(path: Path, entry: ModelEntry, *, label: str | None = None) -> dict[str, Any]:
    """Check ``path`` against ``entry`` and return the record stored beside the cached file.

    Fields the registry could not confirm are not enforced: the architecture is then read from the
    file itself (and recorded), so a correct published file is never refused because of a guess.
    ``label`` replaces the temporary path in error messages (it names where the file came from).
    """
    from glaviz import __version__

    label = label or str(path)
    digest = sha256_file(path)
    if entry.sha256 and digest != entry.sha256:
        raise WeightsError(
            f"{label} has sha256 {digest}, but the registry pins {entry.sha256} for {entry.file}; "
            "the file is corrupt or a different release"
        )
    groups = entry.feature_groups if entry.is_confirmed("features") else None
    location = (entry.location_size or 0) if entry.is_confirmed("location") else None
    try:
        from glaviz.model.checkpoint import verify_checkpoint

        info = verify_checkpoint(path, feature_groups=groups, location_size=location)
    except GlavizError as exc:
        raise WeightsError(str(exc).replace(str(path), label)) from None
    except Exception as exc:  # h5py/Keras failures on hostile input must not leak as tracebacks
        raise WeightsError(
            f"{label} could not be loaded as GlaViTU weights ({type(exc).__name__}: {exc})"
        ) from None
    if entry.is_confirmed("patch_size") and info.patch_size != entry.patch_size:
        raise WeightsError(
            f"{label} was trained on {info.patch_size}-pixel patches, but model {entry.name!r} "
            f"uses {entry.patch_size}"
        )
    found = list(info.feature_groups.values())
    if groups is None and found != list(entry.feature_groups.values()):
        logger.warning(
            "%s: the registry's unconfirmed feature groups %s differ from the file's %s; "
            "glaviz uses the file's",
            entry.name,
            "+".join(entry.features),
            "+".join(f"{g}({n})" for g, n in info.feature_groups.items()),
        )
    return {
        "model": entry.name,
        "file": entry.file,
        "sha256": digest,
        "size": path.stat().st_size,
        "feature_groups": dict(info.feature_groups),
        "location_size": info.location_size or 0,
        "patch_size": info.patch_size,
        "keras_version": info.keras_version,
        "sha256_pinned": entry.sha256 is not None,
        "glaviz_version": __version__,
    }


def _install(tmp: Path, target: Path, record: dict[str, Any], source: str) -> None:
    # The record goes first: a record without its file is harmless (read_info checks the size),
    # a file without its record would lose the verified architecture.
    write_json_atomic(info_path(target), {**record, "source": source}, sort_keys=True)
    os.replace(tmp, target)


def _refuse(exc: WeightsError, entry: ModelEntry, what: str) -> WeightsError:
    return WeightsError(f"{exc}; refused as model {entry.name!r} ({entry.file}): {what}")


# --------------------------------------------------------------------------------------------------
# Fetch and import


def fetch_model(
    model: str | ModelEntry,
    *,
    base_url: str | None = None,
    force: bool = False,
    progress: bool = False,
    home: Path | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> FetchResult:
    """Make ``model`` available in the cache, downloading and verifying it if needed.

    A model that is already cached is left alone unless ``force``; a concurrent fetch of the same
    model waits for the lock and then finds the finished file. With ``force`` the old file stays
    in place until the new one has passed verification.
    """
    entry = _entry(model)
    packaged = packaged_path(entry)
    if packaged is not None:
        return FetchResult(entry, packaged, "packaged", None, packaged.stat().st_size, None)
    target = cached_path(entry, home=home)
    plan = sources(entry, base_url)
    with locked(target):
        if target.is_file() and not force:
            info = read_info(target)
            digest = str(info["sha256"]) if info else None
            return FetchResult(entry, target, "cached", None, target.stat().st_size, digest)
        part = part_path(target)
        if force:
            discard_partial(part)
        errors: list[str] = []
        for source in plan:
            try:
                url = _get(source, part, entry=entry, policy=policy, progress=progress)
            except (DownloadError, InputError) as exc:
                errors.append(str(exc))
                if part.is_file() and part.stat().st_size:
                    break  # a partial download is resumed from this source next time, not spliced
                continue
            try:
                record = verify_weights(part, entry, label=url)
            except WeightsError as exc:
                discard_partial(part)
                raise _refuse(
                    exc, entry, "the download was deleted; check that the source serves this file"
                ) from None
            _install(part, target, record, url)
            discard_partial(part)
            return FetchResult(entry, target, "downloaded", url, record["size"], record["sha256"])
        drive = load_registry().drive
        hint = (
            f"; or download {entry.file} in a browser from {drive.url} and import it: "
            f"glaviz fetch-weights {entry.name} --from FILE"
        )
        raise DownloadError("; ".join(errors) + hint)


def _get(
    source: Source, part: Path, *, entry: ModelEntry, policy: RetryPolicy, progress: bool
) -> str:
    """Put ``source``'s copy of ``entry`` into ``part``; return the URL or path it came from."""
    if source.kind == "drive":
        base = drive_url()
        file_id = source.location or find_file(
            entry.file, load_registry().drive.folder_id, base=base, policy=policy
        )
        return download_file(
            file_id, part, file=entry.file, base=base, policy=policy, progress=progress
        )
    url = source.location
    if urlsplit(url).scheme in ("http", "https"):
        download(url, part, policy=policy, progress=progress, label=entry.file)
        page = html_page(part)
        if page is not None:  # a mirror's error page or login wall saved as the file
            discard_partial(part)
            raise refusal(page, source=url, file=entry.file)
        return url
    local = Path(url2pathname(urlsplit(url).path)) if url.startswith("file:") else Path(url)
    if not local.is_file():
        raise InputError(f"mirror file {local} does not exist")
    discard_partial(part)
    tmp = temp_in(part.parent, part.name)
    try:
        shutil.copyfile(local, tmp)
        os.replace(tmp, part)
    finally:
        remove_quietly(tmp)
    return url


def import_model(
    model: str | ModelEntry,
    source: str | os.PathLike[str],
    *,
    force: bool = False,
    home: Path | None = None,
) -> FetchResult:
    """Copy a hand-downloaded file into the cache as ``model``, verified like a download.

    Refuses (unless ``force``) to replace a different cached file, and to import a file whose name
    is another model's published file name: both are how the wrong weights end up under a name.
    """
    entry = _entry(model)
    src = Path(source).expanduser()
    if not src.is_file():
        raise InputError(
            f"--from {src}: no such file; give the path of the downloaded {entry.file}"
        )
    named = load_registry().get(src.name)
    if named is not None and named.name != entry.name and not force:
        raise ConfigError(
            f"{src.name} is the published file of model {named.name!r}, not {entry.name!r} "
            f"({entry.file}); run: glaviz fetch-weights {named.name} --from {src} "
            "(or add --force if the file really is this model)"
        )
    target = cached_path(entry, home=home)
    with locked(target):
        if target.is_file() and src.resolve() == target.resolve():
            return FetchResult(entry, target, "cached", str(src), target.stat().st_size, None)
        if target.is_file() and not force:
            digest = sha256_file(src)
            if digest == sha256_file(target):
                return FetchResult(entry, target, "cached", str(src), target.stat().st_size, digest)
            raise output_exists(
                target,
                f"already holds model {entry.name!r} (a different file)",
                fix=f"add --force to replace it with {src}",
            )
        tmp = temp_in(target.parent, target.name)
        try:
            shutil.copyfile(src, tmp)
            try:
                record = verify_weights(tmp, entry, label=str(src))
            except WeightsError as exc:
                raise _refuse(exc, entry, "nothing was imported") from None
            _install(tmp, target, record, str(src))
        finally:
            remove_quietly(tmp)
    return FetchResult(entry, target, "imported", str(src), record["size"], record["sha256"])


def cache_status(*, home: Path | None = None) -> list[CacheStatus]:
    """Every registry model with its cache file and whether it is there (no network)."""
    rows = []
    for entry in load_registry().models:
        packaged = packaged_path(entry)
        path = packaged or cached_path(entry, home=home)
        cached = path.is_file()
        info = read_info(path) if cached and packaged is None else None
        digest = str(info["sha256"]) if info else (entry.sha256 if packaged else None)
        rows.append(
            CacheStatus(
                entry=entry,
                path=path,
                cached=cached,
                size=path.stat().st_size if cached else None,
                packaged=packaged is not None,
                sha256=digest,
            )
        )
    return rows
