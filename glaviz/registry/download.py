"""Resumable HTTP download of one file, with retries and an optional progress bar.

Used for the published checkpoints (~40 MB, from Google Drive or a mirror) and the published
datasets (up to 243 GB, from the NIRD archive). Servers do drop connections, so a download is
written to ``<file>.part`` and continued with a ``Range`` request (``If-Range`` guards against the
file having changed on the server in between). Only connection failures, timeouts and server-side
errors (5xx, 408, 429) are retried, with exponential backoff; a 404 or 403 will not get better by
asking again. A host that never answered at all (offline, DNS failure, firewall) gets only
``connect_attempts`` tries, so an offline machine fails in seconds.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glaviz.errors import DownloadError, first_line
from glaviz.registry.cache import remove_quietly
from glaviz.util.progress import Progress

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults suit a flaky archive; tests pass a tiny ``backoff_s``.

    ``attempts`` counts consecutive attempts that brought no new bytes; an attempt that made
    progress before failing resets the count, so a long download over a bad line still finishes.
    ``max_total_attempts`` bounds everything. ``connect_attempts`` applies while the server has not
    answered once in this download: then the network is likely down, and waiting is pointless.
    """

    attempts: int = 5
    connect_attempts: int = 2
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    chunk_size: int = 1 << 20
    max_total_attempts: int = 100

    def delay(self, failures: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, failures - 1)))


DEFAULT_POLICY = RetryPolicy()


class HTTPStatusError(DownloadError):
    """The server answered with an HTTP error that retrying will not fix (403, 404, …)."""

    def __init__(self, message: str, *, status: int, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class _Retry(Exception):
    """A failure worth another attempt (server error, short body)."""


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_meta(part: Path) -> dict[str, Any]:
    try:
        meta = json.loads(_meta_path(part).read_text(encoding="utf8"))
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_meta(part: Path, url: str, validator: str | None) -> None:
    _meta_path(part).write_text(json.dumps({"url": url, "validator": validator}), encoding="utf8")


def discard_partial(part: Path) -> None:
    """Remove an interrupted download and its bookkeeping."""
    remove_quietly(part, _meta_path(part))


def note_kept_partial(exc: BaseException, part: Path, resumer: str) -> None:
    """Add a note to an interrupt (^C, or a signal raised as one) that ``part`` is kept.

    The CLI's generic interrupt message says that nothing partial was left behind, which is true
    of outputs but not of downloads: their ``.part`` stays on purpose, and the user should know
    that ``resumer`` (the next run) continues it rather than starting over. The note travels
    with the exception (PEP 678), so the layer that prints it needs no download knowledge.
    """
    size = part.stat().st_size if part.is_file() else 0
    if size:
        exc.add_note(f"the partial download {part} ({size:,} bytes) is kept; {resumer} resumes it")


def _strong_validator(headers: Any) -> str | None:
    # If-Range needs a strong validator: a weak ETag (W/"…") may match a different byte sequence.
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    modified = headers.get("Last-Modified")
    return str(modified) if modified else None


@dataclass
class _Transfer:
    """One file's download across attempts: what the server said so far, and what is on disk.

    ``validator`` is the strong ETag or Last-Modified that a resume must match; ``answered``
    turns true once the server has answered at all (then retries follow ``policy.attempts``, not
    ``policy.connect_attempts``); ``received`` counts the bytes of the latest attempt, because an
    attempt that made progress resets the failure count.
    """

    url: str
    part: Path
    validator: str | None
    user_agent: str
    policy: RetryPolicy
    answered: bool = False
    received: int = 0

    def attempt(self, session: Any, bar: Progress) -> int:
        """One request: resume or restart, stream the body; the final size, or raise _Retry."""
        offset = self.part.stat().st_size if self.part.exists() else 0
        self.received = 0
        timeout = (self.policy.connect_timeout_s, self.policy.read_timeout_s)
        with session.get(
            self.url, headers=self._headers(offset), stream=True, timeout=timeout
        ) as response:
            self.answered = True
            done = self._check_status(response, offset)
            if done is not None:
                return done
            expected, offset, mode = self._body_start(response, offset)
            bar.reset(total=expected, completed=offset)
            with self.part.open(mode) as handle:
                for chunk in response.iter_content(chunk_size=self.policy.chunk_size):
                    handle.write(chunk)
                    self.received += len(chunk)
                    bar.advance(len(chunk))
        size = self.part.stat().st_size
        if expected is not None and size != expected:
            if size > expected:
                discard_partial(self.part)
            raise _Retry(f"connection closed after {size} of {expected} bytes")
        return size

    def _headers(self, offset: int) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        return headers

    def _check_status(self, response: Any, offset: int) -> int | None:
        """Raise for a status that is an error; the size when a resume finds the file complete."""
        status = response.status_code
        if status == 416 and offset:
            # Asked for bytes past the end: done if the server's size is ours.
            match = _UNSATISFIED_RANGE.search(response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == offset:
                return offset
            discard_partial(self.part)
            raise _Retry("the server rejected the resume range; starting over")
        if status in _RETRY_STATUS or status >= 500:
            raise _Retry(f"HTTP {status} {response.reason}")
        if status >= 400:
            raise HTTPStatusError(
                f"{self.url} answered HTTP {status} {response.reason}", status=status, url=self.url
            )
        return None

    def _body_start(self, response: Any, offset: int) -> tuple[int | None, int, str]:
        """``(expected total size, offset the body starts at, file mode)`` of a good answer."""
        if response.status_code == 206 and offset:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                discard_partial(self.part)
                raise _Retry("the server resumed at the wrong offset; starting over")
            return (None if match.group(3) == "*" else int(match.group(3))), offset, "ab"
        # 200: a fresh file (or the server ignored Range / the file changed).
        length = response.headers.get("Content-Length")
        self.validator = _strong_validator(response.headers)
        _write_meta(self.part, self.url, self.validator)
        return (int(length) if length and length.isdigit() else None), 0, "wb"


def download(
    url: str,
    part: Path,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    progress: bool = False,
    label: str = "",
    user_agent: str | None = None,
) -> int:
    """Download ``url`` into ``part``, resuming what is already there; return the final size.

    ``part`` is kept on failure so that the next call resumes it (its companion ``.json`` remembers
    the URL and validator; a part from a different URL is discarded, never spliced). Raises
    :class:`DownloadError` when the server refuses the file or every retry failed.
    """
    import requests

    from glaviz import __version__

    meta = _read_meta(part)
    if part.exists() and meta.get("url") != url:
        discard_partial(part)
        meta = {}
    transfer = _Transfer(
        url=url,
        part=part,
        validator=meta.get("validator"),
        user_agent=user_agent or f"glaviz/{__version__}",
        policy=policy,
    )
    failures = attempts = 0
    bar = Progress(progress, total=None, description=label or part.name, transfer=True)
    with bar, requests.Session() as session:
        while True:
            attempts += 1
            try:
                return transfer.attempt(session, bar)
            except (
                _Retry,
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,  # a body cut short mid-transfer
            ) as exc:
                last_error = _describe(exc)
            except requests.exceptions.InvalidURL as exc:
                raise DownloadError(f"invalid download URL {url!r}: {exc}") from None
            except requests.RequestException as exc:
                raise DownloadError(f"download of {url} failed: {_describe(exc)}") from None
            failures = 1 if transfer.received else failures + 1
            limit = policy.attempts if transfer.answered else policy.connect_attempts
            if failures >= limit or attempts >= policy.max_total_attempts:
                kept = part.exists() and part.stat().st_size > 0
                resume = f"; {part} is kept and the next fetch resumes it" if kept else ""
                raise DownloadError(
                    f"download of {url} failed after {attempts} attempt(s): {last_error}{resume}"
                )
            time.sleep(policy.delay(failures))


def _describe(exc: BaseException) -> str:
    text = first_line(exc)
    # urllib3 buries the cause in a long repr; name the usual ones plainly.
    for marker, plain in (
        ("NameResolutionError", "the host name could not be resolved (no network or DNS)"),
        ("Name or service not known", "the host name could not be resolved (no network or DNS)"),
        ("Connection refused", "the connection was refused"),
        ("ConnectTimeout", "the connection timed out"),
        ("Network is unreachable", "the network is unreachable"),
    ):
        if marker in text:
            return plain
    return text[:200]
