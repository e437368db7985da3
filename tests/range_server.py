"""A static file server on 127.0.0.1 that answers HTTP Range requests, counts what it sends, and
fails on demand: the stand-in for the Google Cloud and AWS buckets that ``/vsicurl/`` reads.

It serves the files under ``root`` at their relative paths, so a test lays files out as the
bucket does (``tiles/27/V/WK/<product>.SAFE/GRANULE/…``, ``copernicus-dem-30m/<id>/<id>.tif``)
and points glaviz's base-URL variables at ``server.url``.

- ``GET`` with ``Range: bytes=a-b``, ``a-`` or ``-n`` answers 206 with ``Content-Range`` (416
  beyond the end); without ``Range``, 200 and the whole file. ``HEAD`` answers the size.
- ``requests[path]`` counts requests per path and ``bytes_sent[path]`` the body bytes sent, so a
  test can tell that a second run read nothing again; ``authorizations`` keeps each request's
  ``Authorization`` header, so a test can tell that S3 requests were signed (the server itself
  answers every request, signed or not, as a path-style S3 endpoint would to valid keys).
- ``fault`` makes the next ``fault_count`` requests (every one when None) fail: ``"refuse"``
  closes the connection without an answer, ``"slow"`` waits ``delay_s`` before answering,
  ``"5xx"`` answers ``fault_status`` (503). ``fault_paths`` limits the fault to paths that
  start with one of its prefixes.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

Fault = Literal["refuse", "slow", "5xx"]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class RangeServer:
    """The folder served, the faults to inject, and the counts of what was asked and sent."""

    root: Path
    fault: Fault | None = None
    fault_count: int | None = None
    fault_status: int = 503
    fault_paths: tuple[str, ...] = ()
    delay_s: float = 1.0
    requests: Counter[str] = field(default_factory=Counter)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    ranges: list[tuple[str, str | None]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset_counts(self) -> None:
        """Forget what was asked so far (between two runs of one test)."""
        with self._lock:
            self.requests.clear()
            self.bytes_sent.clear()
            self.ranges.clear()
            self.authorizations.clear()

    def count_request(self, path: str, byte_range: str | None, authorization: str | None) -> None:
        """Note one request (handler threads run at once, hence the lock)."""
        with self._lock:
            self.requests[path] += 1
            self.ranges.append((path, byte_range))
            self.authorizations.append(authorization)

    def count_sent(self, path: str, size: int) -> None:
        """Note ``size`` body bytes about to be sent for ``path``."""
        with self._lock:
            self.bytes_sent[path] += size

    @property
    def total_bytes(self) -> int:
        """Body bytes sent over every path."""
        return sum(self.bytes_sent.values())

    def take_fault(self, path: str) -> Fault | None:
        """The fault this request gets, if any (and count it down)."""
        with self._lock:
            return self._take_fault(path)

    def _take_fault(self, path: str) -> Fault | None:
        if self.fault is None:
            return None
        if self.fault_paths and not path.lstrip("/").startswith(
            tuple(p.lstrip("/") for p in self.fault_paths)
        ):
            return None
        if self.fault_count is not None:
            if self.fault_count <= 0:
                return None
            self.fault_count -= 1
        return self.fault


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``Range`` header → inclusive (first, last), None for the whole file; ValueError when the
    range cannot be satisfied."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # multi-range or another unit: answer the whole file, as servers may
    first, last = match.group(1), match.group(2)
    if first == "":
        length = int(last)
        if length == 0:
            raise ValueError(header)
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError(header)
    return start, end


def _handler(server: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            server.count_request(path, self.headers.get("Range"), self.headers.get("Authorization"))
            fault = server.take_fault(path)
            if fault == "refuse":
                self.close_connection = True
                self.connection.close()
                return
            if fault == "slow":
                time.sleep(server.delay_s)
            if fault == "5xx":
                self._status_only(server.fault_status)
                return
            target = (server.root / path.lstrip("/")).resolve()
            if server.root.resolve() not in target.parents or not target.is_file():
                self._status_only(404)
                return
            self._send_file(path, target, body=body)

        def _send_file(self, path: str, target: Path, *, body: bool) -> None:
            size = target.stat().st_size
            try:
                span = _byte_range(self.headers.get("Range"), size)
            except ValueError:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            first, last = span if span is not None else (0, size - 1)
            self.send_response(206 if span is not None else 200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(max(last - first + 1, 0)))
            if span is not None:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            if not body or size == 0:
                return
            with target.open("rb") as handle:
                handle.seek(first)
                data = handle.read(last - first + 1)
            # Counted before the write: once the client holds the bytes, a test may look.
            server.count_sent(path, len(data))
            self.wfile.write(data)

        def _status_only(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """A server that does not print a traceback when a client hangs up mid-answer (a test's
    timeout or refused connection does that on purpose)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free port of 127.0.0.1 in a thread, stopped on exit; yields
    ``http://127.0.0.1:PORT`` (no trailing slash). The STAC test server uses it too."""
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextmanager
def range_server(root: Path) -> Iterator[RangeServer]:
    """Serve ``root`` on a free port of 127.0.0.1; ``server.url`` has no trailing slash."""
    state = RangeServer(root=Path(root))
    with serving(_handler(state)) as url:
        state.url = url
        yield state
