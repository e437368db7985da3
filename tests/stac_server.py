"""A local STAC API on 127.0.0.1 that answers from real recorded catalogue responses.

The items it serves are the ones in ``tests/fixtures/stac/`` (recorded from Earth Search v1 by
other projects' test suites; ``PROVENANCE.md`` there says which). A test picks the recordings it
wants; the server then behaves like Earth Search's stac-server for them:

- ``GET /v1`` is the recorded landing page and ``GET /v1/conformance`` its conformance classes;
- ``POST /v1/search`` and ``GET /v1/search`` filter the recorded items by ``collections``,
  ``bbox`` or ``intersects``, ``datetime`` and ``query`` on ``eo:cloud_cover``, newest first, and
  page them ``limit`` at a time with the ``next`` links Earth Search writes (a POST link with
  ``"merge": false`` and the whole body plus a ``next`` token of ``datetime,id,collection``);
- ``GET /v1/collections/{collection}/items/{id}`` returns one item.

Every ``https://earth-search.aws.element84.com/v1`` in what it serves is rewritten to the
server's own address, so a client follows links to the server and never to the internet. Asset
hrefs (``s3://…``) are left as recorded: mapping them to HTTP is what the code under test does.

Faults for the retry tests: ``fail_next`` answers that many requests with ``fail_status``, and
``delay_s`` holds every answer back that long. ``requests`` records what was asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.range_server import serving

FIXTURES = Path(__file__).parent / "fixtures" / "stac"
RECORDED_ROOT = "https://earth-search.aws.element84.com/v1"

#: Recordings of Earth Search v1, by short name (files under ``tests/fixtures/stac/``).
EARTH_SEARCH = {
    "landing": "earth-search/landing.json",
    "l1c": "earth-search/sentinel-2-l1c_search.json",
    "l2a": "earth-search/sentinel-2-l2a_landsat_search.json",
    "dem30": "earth-search/cop-dem-glo-30_search.json",
    "dem30-limit1": "earth-search/cop-dem-glo-30_search_limit1.json",
}
#: Items made by stactools' cop-dem package, the generator behind Earth Search's DEM items.
STACTOOLS_DEM = {
    "dem30-n53w115": "stactools-cop-dem/Copernicus_DSM_COG_10_N53_00_W115_00_DEM.json",
    "dem90-n53w115": "stactools-cop-dem/Copernicus_DSM_COG_30_N53_00_W115_00_DEM.json",
}
RECORDINGS = {**EARTH_SEARCH, **STACTOOLS_DEM}
#: Earth Search's default page size (``context.limit`` of the recorded searches without one).
DEFAULT_LIMIT = 10


def load_items(names: Iterable[str]) -> list[dict[str, Any]]:
    """The items of the named recordings (FeatureCollections or single items), ids unique."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in names:
        data = json.loads((FIXTURES / RECORDINGS.get(name, name)).read_text())
        features = data["features"] if data.get("type") == "FeatureCollection" else [data]
        for feature in features:
            found[(feature.get("collection", ""), feature["id"])] = feature
    return list(found.values())


def _item_bbox(item: dict[str, Any]) -> tuple[float, float, float, float]:
    if "bbox" in item:
        return tuple(item["bbox"][:4])  # type: ignore[return-value]
    return _geometry_bbox(item["geometry"])


def _geometry_bbox(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    points: list[list[float]] = []

    def walk(value: Any) -> None:
        if value and isinstance(value[0], int | float):
            points.append(value)
        else:
            for part in value:
                walk(part)

    walk(geometry["coordinates"])
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _in_interval(item: dict[str, Any], interval: str) -> bool:
    when = item["properties"].get("datetime")
    if when is None:
        return True
    start, _, end = interval.partition("/") if "/" in interval else (interval, "", interval)
    moment = _instant(when)
    if start not in ("", "..") and moment < _instant(start):
        return False
    return end in ("", "..") or moment <= _instant(end)


_OPS = {"lt": float.__lt__, "lte": float.__le__, "gt": float.__gt__, "gte": float.__ge__}


def _matches_query(item: dict[str, Any], query: dict[str, Any]) -> bool:
    for prop, tests in query.items():
        value = item["properties"].get(prop)
        for op, bound in tests.items():
            if op == "eq":
                if value != bound:
                    return False
            elif value is None or not _OPS[op](float(value), float(bound)):
                return False
    return True


def _token(item: dict[str, Any]) -> str:
    return f"{item['properties'].get('datetime')},{item['id']},{item.get('collection')}"


@dataclass
class StacServer:
    """What the server answers from, which faults it injects, and what it was asked."""

    items: list[dict[str, Any]]
    landing: dict[str, Any]
    fail_next: int = 0
    fail_status: int = 503
    delay_s: float = 0.0
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    url: str = ""

    def searches(self) -> list[dict[str, Any]]:
        """The bodies (or query parameters) of the searches asked, in order."""
        return [body or {} for method, path, body in self.requests if path.endswith("/search")]

    def select(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The recorded items a search matches, newest first (stac-server's default order)."""
        chosen = list(self.items)
        if params.get("collections"):
            chosen = [i for i in chosen if i.get("collection") in params["collections"]]
        if params.get("ids"):
            chosen = [i for i in chosen if i["id"] in params["ids"]]
        area = params.get("bbox") or (
            _geometry_bbox(params["intersects"]) if params.get("intersects") else None
        )
        if area is not None:
            chosen = [i for i in chosen if _overlaps(_item_bbox(i), tuple(area))]
        if params.get("datetime"):
            chosen = [i for i in chosen if _in_interval(i, params["datetime"])]
        if params.get("query"):
            chosen = [i for i in chosen if _matches_query(i, params["query"])]
        chosen.sort(key=lambda i: (i["properties"].get("datetime") or "", i["id"]), reverse=True)
        return chosen

    def page(self, params: dict[str, Any], method: str) -> dict[str, Any]:
        """One page of a search, with Earth Search's envelope and ``next`` link."""
        matched = self.select(params)
        start = 0
        if params.get("next"):
            tokens = [_token(i) for i in matched]
            start = tokens.index(params["next"]) + 1 if params["next"] in tokens else len(matched)
        limit = int(params.get("limit") or DEFAULT_LIMIT)
        features = matched[start : start + limit]
        links: list[dict[str, Any]] = []
        if start + limit < len(matched):
            links.append(self._next_link(params, method, _token(features[-1])))
        links.append({"rel": "root", "type": "application/json", "href": self.url})
        return {
            "type": "FeatureCollection",
            "stac_version": "1.0.0",
            "stac_extensions": [],
            "context": {"limit": limit, "matched": len(matched), "returned": len(features)},
            "numberMatched": len(matched),
            "numberReturned": len(features),
            "features": features,
            "links": links,
        }

    def _next_link(self, params: dict[str, Any], method: str, token: str) -> dict[str, Any]:
        link: dict[str, Any] = {
            "rel": "next",
            "title": "Next page of Items",
            "method": method,
            "type": "application/geo+json",
            "href": f"{self.url}/search",
        }
        if method == "POST":
            link |= {"merge": False, "body": {**params, "next": token}}
        else:
            link["href"] += "?" + urlencode(
                {k: _query_value(v) for k, v in params.items()} | {"next": token}
            )
        return link

    def rewrite(self, document: Any) -> bytes:
        """JSON with every recorded root URL pointing at this server."""
        return json.dumps(document).replace(RECORDED_ROOT, self.url).encode()


def _query_value(value: Any) -> str:
    """A search parameter as a GET query value: lists comma-separated, objects as JSON."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _get_params(query: str) -> dict[str, Any]:
    """A GET search's query string → the same parameters a POST body carries."""
    raw = {k: v[-1] for k, v in parse_qs(query).items()}
    params: dict[str, Any] = dict(raw)
    if "collections" in raw:
        params["collections"] = raw["collections"].split(",")
    if "ids" in raw:
        params["ids"] = raw["ids"].split(",")
    if "bbox" in raw:
        params["bbox"] = [float(v) for v in raw["bbox"].split(",")]
    for key in ("intersects", "query"):
        if key in raw:
            params[key] = json.loads(raw[key])
    return params


def _handler(server: StacServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def _answer(self, method: str) -> None:
            parts = urlsplit(self.path)
            body: dict[str, Any] | None = None
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
            elif parts.path.endswith("/search"):
                body = _get_params(parts.query)
            server.requests.append((method, parts.path, body))
            if server.delay_s:
                time.sleep(server.delay_s)
            if server.fail_next > 0:
                server.fail_next -= 1
                self._send(server.fail_status, {"code": "ServiceUnavailable"})
                return
            self._route(method, parts.path.rstrip("/"), body)

        def _route(self, method: str, path: str, body: dict[str, Any] | None) -> None:
            if path == "/v1":
                self._send(200, server.landing)
            elif path == "/v1/conformance":
                self._send(200, {"conformsTo": server.landing.get("conformsTo", [])})
            elif path == "/v1/search":
                self._send(200, server.page(body or {}, method))
            elif path.startswith("/v1/collections/") and "/items/" in path:
                collection, _, item_id = path.removeprefix("/v1/collections/").partition("/items/")
                found = [
                    i for i in server.items if i["id"] == item_id and i["collection"] == collection
                ]
                self._send(200 if found else 404, found[0] if found else {"code": "NotFound"})
            else:
                self._send(404, {"code": "NotFound", "description": path})

        def _send(self, status: int, document: Any) -> None:
            data = server.rewrite(document)
            self.send_response(status)
            self.send_header("Content-Type", "application/geo+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def stac_server(*recordings: str) -> Iterator[StacServer]:
    """Serve the named recordings (keys of :data:`RECORDINGS` or paths under the fixtures) on a
    free port of 127.0.0.1; ``server.url`` is the STAC API root (``http://127.0.0.1:PORT/v1``)."""
    landing = json.loads((FIXTURES / EARTH_SEARCH["landing"]).read_text())
    state = StacServer(items=load_items(r for r in recordings if r != "landing"), landing=landing)
    with serving(_handler(state)) as url:
        state.url = url + "/v1"
        yield state
