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

from glaviz.errors import DownloadError
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


def _strong_validator(headers: Any) -> str | None:
    # If-Range needs a strong validator: a weak ETag (W/"…") may match a different byte sequence.
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    modified = headers.get("Last-Modified")
    return str(modified) if modified else None


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
    validator: str | None = meta.get("validator")

    failures = total_attempts = 0
    answered = False
    last_error = ""
    bar = Progress(progress, total=None, description=label or part.name, transfer=True)
    with bar, requests.Session() as session:
        while True:
            total_attempts += 1
            offset = part.stat().st_size if part.exists() else 0
            headers = {
                "User-Agent": user_agent or f"glaviz/{__version__}",
                "Accept-Encoding": "identity",
            }
            if offset:
                headers["Range"] = f"bytes={offset}-"
                if validator:
                    headers["If-Range"] = validator
            received = 0
            try:
                with session.get(
                    url,
                    headers=headers,
                    stream=True,
                    timeout=(policy.connect_timeout_s, policy.read_timeout_s),
                ) as response:
                    answered = True
                    status = response.status_code
                    if status == 416 and offset:
                        # Asked for bytes past the end: done if the server's size is ours.
                        match = _UNSATISFIED_RANGE.search(response.headers.get("Content-Range", ""))
                        if match and int(match.group(1)) == offset:
                            return offset
                        discard_partial(part)
                        raise _Retry("the server rejected the resume range; starting over")
                    if status in _RETRY_STATUS or status >= 500:
                        raise _Retry(f"HTTP {status} {response.reason}")
                    if status >= 400:
                        raise HTTPStatusError(
                            f"{url} answered HTTP {status} {response.reason}",
                            status=status,
                            url=url,
                        )
                    expected: int | None
                    if status == 206 and offset:
                        match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
                        if not match or int(match.group(1)) != offset:
                            discard_partial(part)
                            raise _Retry("the server resumed at the wrong offset; starting over")
                        expected = None if match.group(3) == "*" else int(match.group(3))
                        mode = "ab"
                    else:
                        # 200: a fresh file (or the server ignored Range / the file changed).
                        offset = 0
                        length = response.headers.get("Content-Length")
                        expected = int(length) if length and length.isdigit() else None
                        validator = _strong_validator(response.headers)
                        _write_meta(part, url, validator)
                        mode = "wb"
                    bar.reset(total=expected, completed=offset)
                    with part.open(mode) as handle:
                        for chunk in response.iter_content(chunk_size=policy.chunk_size):
                            handle.write(chunk)
                            received += len(chunk)
                            bar.advance(len(chunk))
                    size = part.stat().st_size
                    if expected is not None and size != expected:
                        if size > expected:
                            discard_partial(part)
                        raise _Retry(f"connection closed after {size} of {expected} bytes")
                    return size
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
            failures = 1 if received else failures + 1
            limit = policy.attempts if answered else policy.connect_attempts
            if failures >= limit or total_attempts >= policy.max_total_attempts:
                kept = part.exists() and part.stat().st_size > 0
                resume = f"; {part} is kept and the next fetch resumes it" if kept else ""
                raise DownloadError(
                    f"download of {url} failed after {total_attempts} attempt(s): "
                    f"{last_error}{resume}"
                )
            time.sleep(policy.delay(failures))


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
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
