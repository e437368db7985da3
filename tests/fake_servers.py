"""A fault-injecting HTTP server on 127.0.0.1 that imitates a mirror, Google Drive and the archive.

One server answers three kinds of request:

- ``/<file name>``: a plain mirror or the NIRD archive's download folder: ``Range`` and
  ``If-Range`` requests, HTTP errors and dropped connections on demand;
- ``/uc?export=download&id=ID`` and ``/download?id=ID&confirm=…``: Google Drive's file links,
  answering per file id with the file, a virus-scan confirmation page (then the file), a quota page,
  a sign-in page, another HTML page or a truncated file;
- ``/drive/folders/ID``: a public folder page with the ``_DRIVE_ivd`` listing Drive embeds.

Tests fill :class:`FakeServer` and read back what was asked. Nothing touches the network.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FOLDER_MIME = "application/vnd.google-apps.folder"

CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><div class="uc-main"><p class="uc-warning-caption">Google Drive can't scan this file for
viruses.</p><form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="5e1f-uuid">
</form></div></body></html>"""

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>
<body><div class="uc-main"><p class="uc-error-caption">Sorry, you can't view or download this file
at this time.</p><p class="uc-error-subcaption">Too many users have viewed or downloaded this file
recently. Please try accessing the file again later.</p></div></body></html>"""

ACCESS_PAGE = """<!DOCTYPE html><html><head><title>Google Drive: Sign-in</title></head>
<body><a href="https://accounts.google.com/ServiceLogin?continue=x">Sign in</a>
<p>You need access</p></body></html>"""

OTHER_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Page Not Found</title></head>
<body><p>Sorry, the file you have requested does not exist.</p></body></html>"""

DRIVE_MODES = ("direct", "confirm", "quota", "access", "html", "truncated")


class FakeServer:
    """What the server serves, which faults it injects next, and what it was asked."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # mirror / archive: name → bytes
        self.drive: dict[str, bytes] = {}  # Drive: file id → bytes
        self.drive_modes: dict[str, str] = {}  # Drive: file id → one of DRIVE_MODES
        self.folders: dict[str, list[tuple[str, str, str]]] = {}  # id → [(id, name, mime)]
        self.faults: deque[str] = deque()  # per file request: "ok", "500", "drop"
        self.requests: list[tuple[str, str | None]] = []  # (path with query, Range)
        self.throttle_s = 0.0  # pause per 256 KiB chunk, to make transfers overlap
        self.url = ""
        self.lock = threading.Lock()
        self.started = threading.Event()

    def gets(self, name: str) -> list[str | None]:
        """The Range header of every request for the plain file ``name`` (None for a plain GET)."""
        return [rng for path, rng in self.requests if path == name]

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def drive_listing_page(items: list[tuple[str, str, str]]) -> str:
    """A folder page as Drive serves it: the listing is a JSON array in an escaped JS string."""
    rows = [[file_id, ["parent"], name, mime, 0, None] for file_id, name, mime in items]
    data = json.dumps([rows or None, None])
    escaped = data.replace("\\", "\\\\").replace('"', "\\x22").replace("'", "\\x27")
    return (
        "<!DOCTYPE html><html><head><title>weights - Google Drive</title></head><body>"
        f"<script nonce=\"n\">window['_DRIVE_ivd'] = '{escaped}';"
        "if (window['_DRIVE_ivdc']) {window['_DRIVE_ivdc']();}</script></body></html>"
    )


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 20  # a stuck client cannot hold a server thread forever

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            rng = self.headers.get("Range")
            name = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
            with server.lock:
                server.requests.append((name, rng))
                fault = server.faults.popleft() if server.faults else "ok"
            server.started.set()
            if fault == "500":
                self.send_error(500, "injected failure")
            elif parts.path == "/uc":
                self._drive_file(query, rng, fault)
            elif parts.path == "/download" and query.get("confirm") and query.get("uuid"):
                data = server.drive.get(query.get("id", ""))
                self._serve(data, rng, fault)
            elif parts.path.startswith("/drive/folders/"):
                folder = parts.path.rsplit("/", 1)[-1]
                if folder not in server.folders:
                    self.send_error(404)
                else:
                    self._page(drive_listing_page(server.folders[folder]))
            else:
                self._serve(server.files.get(parts.path.lstrip("/")), rng, fault)

        def _drive_file(self, query: dict[str, str], rng: str | None, fault: str) -> None:
            file_id = query.get("id", "")
            data = server.drive.get(file_id)
            mode = server.drive_modes.get(file_id, "direct")
            if data is None:
                self.send_error(404)
            elif mode == "confirm":
                self._page(CONFIRM_PAGE.format(action=f"{server.url}download", id=file_id))
            elif mode in ("quota", "access", "html"):
                page = {"quota": QUOTA_PAGE, "access": ACCESS_PAGE, "html": OTHER_PAGE}[mode]
                self._page(page)
            elif mode == "truncated":  # a complete-looking response holding half the file
                self._serve(data[: len(data) // 2], None, fault)
            else:
                self._serve(data, rng, fault)

        def _page(self, text: str) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self, data: bytes | None, rng: str | None, fault: str) -> None:
            if data is None:
                self.send_error(404)
                return
            etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if match and self.headers.get("If-Range", etag) == etag:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = memoryview(data)[start:]
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.end_headers()
            if fault == "drop":
                # Promise the whole body, deliver a third of it, hang up.
                self.wfile.write(body[: len(body) // 3])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            step = 1 << 18
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                if server.throttle_s:
                    threading.Event().wait(server.throttle_s)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-transfer is what these tests are about


@contextmanager
def running_server() -> Iterator[FakeServer]:
    """Start a :class:`FakeServer` on a free 127.0.0.1 port; stop it on exit."""
    state = FakeServer()
    server = _QuietServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def refused_url() -> str:
    """A 127.0.0.1 URL where nothing listens: connections are refused at once, as offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
