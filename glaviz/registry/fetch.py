"""Fetching published weights into the cache: download or import, verify, then rename into place.

Sources, in order: a mirror (``--base-url`` or ``$GLAVIZ_WEIGHTS_URL``), an entry's own ``urls``,
then the authors' public Google Drive folder (by the entry's file id, else by its file name in the
folder listing). The first source that yields a file decides: a file that fails verification is
an error, not a reason to try the next source; so is a source that fails mid-file (its `.part` is
resumed from it by the next fetch, never spliced with bytes from another source).

Every path into the cache (mirror, direct URL, Drive, ``--from`` import) goes through the same
three steps, under the file's inter-process lock: write to a temporary file in the cache folder,
verify it (:func:`verify_weights`: its sha256 and size, and always a full load into the GlaViTU
architecture the registry describes, with every tensor's shape checked), then ``os.replace`` it
onto the published file name. A file that fails verification is deleted, so the cache only ever
holds files that load.

Which sha256 a file must have (:func:`expected_digest`), strongest first: ``--sha256`` (this fetch),
the registry's pin, else the digest recorded when the model was first installed here (trust on
first use: the verification record beside the cached file). A model installed without a pin is
announced by a warning naming the recorded digest and how to pin it; a later file with another
digest is refused until the user accepts it on purpose (``--force --sha256 NEW``).
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
from glaviz.published.groups import GROUP_BANDS
from glaviz.registry.cache import (
    cached_path,
    info_path,
    locked,
    part_path,
    read_record,
    remove_quietly,
    temp_in,
)
from glaviz.registry.catalogue import REGISTRY_ENV, ModelEntry, load_registry, packaged_path
from glaviz.registry.download import (
    DEFAULT_POLICY,
    RetryPolicy,
    discard_partial,
    download,
    note_kept_partial,
)
from glaviz.registry.drive import download_file, drive_url, find_file, html_page, refusal
from glaviz.runs.atomic import write_json_atomic
from glaviz.runs.outputs import output_exists
from glaviz.util.hashing import sha256_file

logger = logging.getLogger(__name__)

WEIGHTS_URL_ENV = "GLAVIZ_WEIGHTS_URL"

Status = Literal["downloaded", "imported", "cached", "packaged"]

#: Who vouches for a file's sha256: ``--sha256``, the registry, or the record of its first install.
Trust = Literal["--sha256", "registry", "first use"]

_HEX = frozenset("0123456789abcdef")


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
    sha256: str | None = None  # pinned by the registry, else recorded when first installed
    trust: Trust | None = None  # who vouches for ``sha256``; None when nothing is known
    changed: bool = False  # the file's size differs from the recorded (or pinned) one


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


@dataclass(frozen=True)
class Expected:
    """The sha256 (and size) a file installed as a model must have, and who says so.

    ``trust`` is None when nothing is known yet: the file then becomes the first-use record.
    """

    sha256: str | None = None
    size: int | None = None
    trust: Trust | None = None
    source: str | None = None  # for a first-use record: where the trusted file came from
    record: Path | None = None  # for a first-use record: the record file

    def claim(self, entry: ModelEntry) -> str:
        """Who expects which digest, in words for an error message."""
        if self.trust == "--sha256":
            return f"--sha256 asks for {self.sha256}"
        if self.trust == "registry":
            return f"the registry pins {self.sha256} for {entry.file}"
        origin = f"installed from {self.source}; " if self.source else ""
        return (
            f"model {entry.name!r} is recorded here with sha256 {self.sha256} "
            f"({origin}record {self.record}), and no other file is trusted for it"
        )


class DigestMismatch(WeightsError):
    """A file whose sha256 (or size) is not the one expected; ``accept`` says how to take it."""

    def __init__(self, message: str, *, accept: str | None = None) -> None:
        super().__init__(message)
        self.accept = accept


def normalise_sha256(value: str) -> str:
    """``value`` as 64 lowercase hex digits, or a :class:`ConfigError` (a typo must not pin)."""
    digest = value.strip().lower()
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise ConfigError(f"--sha256 {value!r}: expected 64 hexadecimal digits")
    return digest


def expected_digest(
    entry: ModelEntry, target: Path | None = None, sha256: str | None = None
) -> Expected:
    """What a file installed as ``entry`` (at cache file ``target``) must hash to.

    ``sha256`` (``--sha256``) pins this one fetch; it may not contradict the registry's pin (the
    file could match only one of them). Without either, the verification record of the first
    file installed at ``target`` decides, whether or not that file is still there: deleting or
    replacing the cached file must not reset the trust, only deleting its record does.
    """
    option = normalise_sha256(sha256) if sha256 is not None else None
    if option is not None and entry.sha256 is not None and option != entry.sha256:
        raise ConfigError(
            f"--sha256 {option} contradicts the sha256 {entry.sha256} that the registry pins "
            f"for model {entry.name!r}; a file can match only one (change the pin in "
            f"${REGISTRY_ENV}, or leave out --sha256)"
        )
    if option is not None:
        return Expected(option, entry.size if option == entry.sha256 else None, "--sha256")
    if entry.sha256 is not None:
        return Expected(entry.sha256, entry.size, "registry")
    record = read_record(target) if target is not None else None
    if record is None:
        return Expected()
    size = record.get("size")
    source = record.get("source")
    return Expected(
        str(record["sha256"]),
        size if isinstance(size, int) else None,
        "first use",
        source=str(source) if source else None,
        record=info_path(target) if target is not None else None,
    )


def check_digest(path: Path, entry: ModelEntry, expected: Expected, *, label: str) -> str:
    """The sha256 of ``path``; a :class:`DigestMismatch` naming both digests when it is not the
    expected one (a wrong size is said first: it explains a truncated or foreign file at once)."""
    digest = sha256_file(path)
    size = path.stat().st_size
    digest_ok = expected.sha256 is None or digest == expected.sha256
    if digest_ok and (expected.size is None or size == expected.size):
        return digest
    sizes = ""
    if expected.size is not None and size != expected.size:
        sizes = f" ({size:,} bytes, expected {expected.size:,})"
    message = f"{label} has sha256 {digest}{sizes}, but {expected.claim(entry)}"
    accept = None
    if expected.trust == "registry":
        message += "; the file is corrupt or a different release"
    elif expected.trust == "first use":
        accept = f"rerun with --force --sha256 {digest}"
    raise DigestMismatch(message, accept=accept)


def verify_weights(
    path: Path,
    entry: ModelEntry,
    *,
    label: str | None = None,
    expected: Expected | None = None,
) -> dict[str, Any]:
    """Check ``path`` against ``entry`` and return the record stored beside the cached file.

    The digest must be the ``expected`` one (default: the registry's pin, if any). The
    architecture must be the registry's: feature groups (band counts, and the group names when
    the file names its inputs: a SAR model is not an optical+DEM one because both take 6 + 2
    bands), location input size and patch size. Fields the registry could not confirm are not
    enforced: the architecture is then read from the file itself (and recorded), so a correct
    published file is never refused because of a guess. ``label`` replaces the temporary path in
    error messages (it names where the file came from).
    """
    from glaviz import __version__

    label = label or str(path)
    expected = expected if expected is not None else expected_digest(entry)
    digest = check_digest(path, entry, expected, label=label)
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
    named = all(group in GROUP_BANDS for group in info.feature_groups)
    found = "+".join(f"{g}({n})" for g, n in info.feature_groups.items())
    if groups is not None and named and list(info.feature_groups) != list(groups):
        raise WeightsError(
            f"{label} holds a model for the feature groups {found}, not the expected "
            f"{'+'.join(f'{g}({n})' for g, n in groups.items())} of model {entry.name!r}"
        )
    if entry.is_confirmed("patch_size") and info.patch_size != entry.patch_size:
        raise WeightsError(
            f"{label} was trained on {info.patch_size}-pixel patches, but model {entry.name!r} "
            f"uses {entry.patch_size}"
        )
    declared = entry.feature_groups
    differs = list(info.feature_groups.values()) != list(declared.values()) or (
        named and list(info.feature_groups) != list(declared)
    )
    if groups is None and differs:
        logger.warning(
            "%s: the registry's unconfirmed feature groups %s differ from the file's %s; "
            "glaviz uses the file's",
            entry.name,
            "+".join(entry.features),
            found,
        )
    pinned = expected.trust in ("--sha256", "registry")
    return {
        "model": entry.name,
        "file": entry.file,
        "sha256": digest,
        "size": path.stat().st_size,
        "feature_groups": dict(info.feature_groups),
        "location_size": info.location_size or 0,
        "patch_size": info.patch_size,
        "keras_version": info.keras_version,
        "sha256_pinned": pinned,
        "trust": expected.trust if pinned else "first use",
        "glaviz_version": __version__,
    }


def _warn_unpinned(entry: ModelEntry, target: Path, expected: Expected, digest: str) -> None:
    """One warning line when a model was installed without a pin: what is trusted from now on.

    Trust on first use protects later fetches, not this one: the user should see the digest once
    and be told how to make it a real pin (compared with one published by the authors, say).
    """
    if expected.trust in ("--sha256", "registry"):
        return
    state = "matches the one recorded" if expected.trust == "first use" else "is now recorded"
    logger.warning(
        "model %r was installed unpinned: its sha256 %s %s in %s, and later fetches and imports "
        'must match it (trust on first use); to pin it, add sha256 = "%s" to its [[model]] in '
        "$%s (or pass --sha256 with that digest)",
        entry.name,
        digest,
        state,
        info_path(target),
        digest,
        REGISTRY_ENV,
    )


def _install(tmp: Path, target: Path, record: dict[str, Any], source: str) -> None:
    # The record goes first: a record without its file is harmless (read_info checks the size),
    # a file without its record would lose the verified architecture.
    write_json_atomic(info_path(target), {**record, "source": source}, sort_keys=True)
    os.replace(tmp, target)


def _refuse(exc: WeightsError, entry: ModelEntry, what: str) -> WeightsError:
    accept = getattr(exc, "accept", None)
    tail = f"; if the new file is deliberate (a new release), {accept}" if accept else ""
    return WeightsError(f"{exc}; refused as model {entry.name!r} ({entry.file}): {what}{tail}")


def _cached(entry: ModelEntry, target: Path, expected: Expected, source: str | None) -> FetchResult:
    """The result for a file already in the cache, checked against what it must be.

    A cached file with neither a pin nor a record (put there by hand) is reported as it is; one
    whose digest is not the pinned or recorded one was changed after it was verified, and is
    refused rather than used under the model's name.
    """
    size = target.stat().st_size
    if expected.sha256 is None:
        return FetchResult(entry, target, "cached", source, size, None)
    try:
        digest = check_digest(target, entry, expected, label=f"the cached {target}")
    except DigestMismatch as exc:
        if expected.trust == "--sha256":
            fix = f"to replace it, add --force (the new file must have sha256 {expected.sha256})"
        else:
            fix = (
                "it was changed after it was installed; run: glaviz fetch-weights "
                f"{entry.name} --force (the new file is checked the same way)"
            )
        raise WeightsError(f"{exc}; {fix}") from None
    return FetchResult(entry, target, "cached", source, size, digest)


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
    sha256: str | None = None,
) -> FetchResult:
    """Make ``model`` available in the cache, downloading and verifying it if needed.

    A model that is already cached is left alone unless ``force`` (its digest is still checked
    against the pin or the first-use record); a concurrent fetch of the same model waits for the
    lock and then finds the finished file. With ``force`` the old file stays in place until the
    new one has passed verification. ``sha256`` pins this fetch (``--sha256``): a file with
    another digest is refused and deleted. A model built into glaviz is checked against its pin.
    """
    entry = _entry(model)
    packaged = packaged_path(entry)
    if packaged is not None:
        expected = expected_digest(entry, None, sha256)
        try:
            digest = check_digest(packaged, entry, expected, label=str(packaged))
        except DigestMismatch as exc:
            raise WeightsError(
                f"{exc}; the file built into glaviz was modified or damaged: reinstall glaviz"
            ) from None
        return FetchResult(entry, packaged, "packaged", None, packaged.stat().st_size, digest)
    target = cached_path(entry, home=home)
    plan = sources(entry, base_url)
    with locked(target):
        # Read under the lock: a fetch that held it may have just recorded the first file.
        expected = expected_digest(entry, target, sha256)
        if target.is_file() and not force:
            return _cached(entry, target, expected, None)
        part = part_path(target)
        if force:
            discard_partial(part)
        errors: list[str] = []
        try:
            for source in plan:
                try:
                    url = _get(source, part, entry=entry, policy=policy, progress=progress)
                except (DownloadError, InputError) as exc:
                    errors.append(str(exc))
                    if part.is_file() and part.stat().st_size:
                        break  # a partial download is resumed from this source, not spliced
                    continue
                try:
                    record = verify_weights(part, entry, label=url, expected=expected)
                except WeightsError as exc:
                    discard_partial(part)
                    raise _refuse(
                        exc,
                        entry,
                        "the download was deleted; check that the source serves this file",
                    ) from None
                _install(part, target, record, url)
                discard_partial(part)
                _warn_unpinned(entry, target, expected, record["sha256"])
                return FetchResult(
                    entry, target, "downloaded", url, record["size"], record["sha256"]
                )
        except KeyboardInterrupt as exc:  # ^C, or SIGTERM raised as one by the CLI
            note_kept_partial(exc, part, f"the next 'glaviz fetch-weights {entry.name}'")
            raise
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
    sha256: str | None = None,
) -> FetchResult:
    """Copy a hand-downloaded file into the cache as ``model``, verified like a download.

    Refuses (unless ``force``) to replace a different cached file, and to import a file whose name
    is another model's published file name: both are how the wrong weights end up under a name.
    The digest must be ``sha256`` (``--sha256``), else the registry's pin, else the one recorded
    when the model was first installed, exactly as for a download.
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
        expected = expected_digest(entry, target, sha256)
        if target.is_file() and src.resolve() == target.resolve():
            return _cached(entry, target, expected, str(src))
        if target.is_file() and not force:
            if sha256_file(src) == sha256_file(target):
                return _cached(entry, target, expected, str(src))
            raise output_exists(
                target,
                f"already holds model {entry.name!r} (a different file)",
                fix=f"add --force to replace it with {src}",
            )
        tmp = temp_in(target.parent, target.name)
        try:
            shutil.copyfile(src, tmp)
            try:
                record = verify_weights(tmp, entry, label=str(src), expected=expected)
            except WeightsError as exc:
                raise _refuse(exc, entry, "nothing was imported") from None
            _install(tmp, target, record, str(src))
        finally:
            remove_quietly(tmp)
    _warn_unpinned(entry, target, expected, record["sha256"])
    return FetchResult(entry, target, "imported", str(src), record["size"], record["sha256"])


def cache_status(*, home: Path | None = None) -> list[CacheStatus]:
    """Every registry model with its cache file and whether it is there (no network)."""
    rows = []
    for entry in load_registry().models:
        packaged = packaged_path(entry)
        path = packaged or cached_path(entry, home=home)
        cached = path.is_file()
        size = path.stat().st_size if cached else None
        # What the next fetch checks against: the pin, else the first-use record (kept even
        # when the file is gone, so the row shows what a new download must match).
        expected = expected_digest(entry, None if packaged else path)
        rows.append(
            CacheStatus(
                entry=entry,
                path=path,
                cached=cached,
                size=size,
                packaged=packaged is not None,
                sha256=expected.sha256,
                trust=expected.trust,
                changed=cached and expected.size is not None and size != expected.size,
            )
        )
    return rows
