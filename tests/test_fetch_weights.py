"""``glaviz fetch-weights``: registry, resolution, and the verified, resumable weights cache.

A local HTTP server on 127.0.0.1 stands in for a mirror of the research data archive. It serves the
reference checkpoint (same format as the published weights) and injects faults on demand: HTTP
errors, connections dropped mid-file, slow transfers. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from glaviz.cli.app import main
from glaviz.errors import ConfigError, DownloadError, WeightsError
from glaviz.groups import REGIONS
from glaviz.registry import (
    RetryPolicy,
    cached_path,
    calibration_path,
    fetch_model,
    import_model,
    load_registry,
    resolve_weights,
)

REFERENCE = Path(__file__).parents[1].parent / "shared" / "reference"
REFERENCE_WEIGHTS = REFERENCE / "weights" / "glavitu_global_weights.h5"
GLOBAL_FILE = "glavitu_global_weights.h5"

#: Retries without the user-facing pauses, and a bounded wait on a stuck server.
FAST = RetryPolicy(attempts=3, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=20)


# --------------------------------------------------------------------------------------------------
# Fixtures: isolated cache, reference bytes, and a fault-injecting mirror


@pytest.fixture(autouse=True)
def glaviz_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("GLAVIZ_HOME", str(home))
    monkeypatch.delenv("GLAVIZ_WEIGHTS_URL", raising=False)
    # A proxy from the environment must not intercept the local mirror.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return home


@pytest.fixture(scope="module")
def reference_bytes() -> bytes:
    if not REFERENCE_WEIGHTS.is_file():
        pytest.skip(f"reference checkpoint {REFERENCE_WEIGHTS} is not available")
    return REFERENCE_WEIGHTS.read_bytes()


class Mirror:
    """What the test server serves, which faults it injects next, and what it was asked."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: deque[str] = deque()  # per request: "ok", "500", "drop"
        self.requests: list[tuple[str, str | None]] = []
        self.throttle_s = 0.0  # pause per 256 KiB chunk, to make transfers overlap
        self.url = ""
        self.lock = threading.Lock()
        self.started = threading.Event()

    def gets(self, name: str) -> list[str | None]:
        """The Range header of every request for ``name`` (None for a plain GET)."""
        return [rng for path, rng in self.requests if path == name]


def _handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 20  # a stuck client cannot hold a server thread forever

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            rng = self.headers.get("Range")
            with mirror.lock:
                mirror.requests.append((name, rng))
                fault = mirror.faults.popleft() if mirror.faults else "ok"
            mirror.started.set()
            if fault == "500":
                self.send_error(500, "injected failure")
                return
            data = mirror.files.get(name)
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
                if mirror.throttle_s:
                    threading.Event().wait(mirror.throttle_s)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-transfer is what these tests are about


@pytest.fixture
def mirror(reference_bytes: bytes) -> Iterator[Mirror]:
    state = Mirror()
    state.files[GLOBAL_FILE] = reference_bytes
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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resumed_at(range_header: str | None) -> int:
    """The offset a ``Range: bytes=N-`` request resumes from (what the client had kept)."""
    match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
    assert match, f"expected a resume request, got Range: {range_header}"
    return int(match.group(1))


def cache_files(home: Path) -> list[str]:
    """Everything in the weights folder: verified files, records, and any leftovers."""
    folder = home / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------------------------------
# Registry and resolution (no downloads)


def test_registry_has_the_published_models() -> None:
    registry = load_registry()
    expected = {"global", "global-insar", "region-encoding", *(r.lower() for r in REGIONS)}
    # Plus glaviz's own built-in demo model, which ships inside the package.
    assert set(registry.names()) == expected | {"demo"}
    files = [e.file for e in registry.models]
    assert len(set(files)) == len(files), "two entries would share one cache file"
    published = [e for e in registry.models if not e.packaged]
    template = re.compile(r"^glavitu_[a-z]+(_[A-Z,]+)?(_[a-z]+)?_weights\.h5$")
    assert all(template.match(e.file) for e in published), files
    # Nothing is pinned that we could not check; a made-up digest would refuse the real file.
    assert all(e.sha256 is None for e in published)

    glob = registry.require("global")
    assert glob.file == GLOBAL_FILE and glob.feature_groups == {"optical": 6, "dem": 2}
    assert glob.location_size is None and glob.confirmed
    region = registry.require("region-encoding")
    assert region.region_order == REGIONS and region.location_size == 12
    hma = registry.require("hma")
    assert hma.file == "glavitu_finetuning_HMA_weights.h5" and hma.regions == ("HMA",)
    assert hma.strategy == "finetuning" and hma.calibration is None
    assert registry.get("HMA") is hma and registry.get("glavitu_finetuning_HMA_weights.h5") is hma


def test_packaged_calibrations_match_the_reference() -> None:
    pairs = {
        "global": "glavitu_global_softmax",
        "global-insar": "glavitu_global_insar_softmax",
        "region-encoding": "glavitu_regionencoding_softmax",
    }
    for model, name in pairs.items():
        assert load_registry().require(model).calibration == name
        path = calibration_path(name)
        assert path == calibration_path(model) == calibration_path(f"{name}.json")
        assert json.loads(path.read_text())["kernel"] == "laplacian"
        reference = REFERENCE / "calibration" / f"{name}.json"
        if reference.is_file():
            assert path.read_bytes() == reference.read_bytes()


def test_calibration_path_accepts_files_and_explains_unknown_names(tmp_path: Path) -> None:
    own = tmp_path / "cal.json"
    own.write_text("{}")
    assert calibration_path(str(own)) == own
    with pytest.raises(ConfigError, match="glavitu_global_softmax"):
        calibration_path("no-such-calibration")
    with pytest.raises(ConfigError, match="no published confidence calibration"):
        calibration_path("hma")


def test_resolve_weights(tmp_path: Path, glaviz_home: Path) -> None:
    own = tmp_path / "mine.h5"
    own.write_bytes(b"x")
    resolved = resolve_weights(str(own))
    assert resolved.path == own and resolved.entry is None and resolved.source == "file"

    with pytest.raises(WeightsError, match=r"not in the cache; run: glaviz fetch-weights hma"):
        resolve_weights("hma")
    with pytest.raises(ConfigError, match=r"known models are global, global-insar"):
        resolve_weights("nonsense")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_weights(str(tmp_path / "missing.h5"))

    entry = load_registry().require("region-encoding")
    target = cached_path(entry)
    assert target == glaviz_home / "weights" / "glavitu_regionencoding_weights.h5"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"y")
    resolved = resolve_weights("RegionEncoding")
    assert resolved.path == target and resolved.entry is entry and resolved.source == "cache"
    assert resolved.location_size == 12 and resolved.feature_groups == {"optical": 6, "dem": 2}
    assert resolved.calibration == calibration_path("glavitu_regionencoding_softmax")


def test_list_works_offline(
    glaviz_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--list must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    target = cached_path(load_registry().require("global"))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\0" * 2_500_000)

    assert main(["fetch-weights", "--list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert GLOBAL_FILE in lines["global"] and "2.5 MB" in lines["global"]
    assert lines["global"].rstrip().endswith("yes")
    assert lines["hma"].rstrip().endswith("no")
    assert "glavitu_finetuning_SVAL_weights.h5" in out and str(glaviz_home) in out


def test_no_source_names_the_doi_and_from(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch-weights", "hma"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "10.11582/2024.00168" in err
    assert "glaviz fetch-weights hma --from FILE" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fetch-weights"], "name the model"),
        (["fetch-weights", "global", "--all"], "not both"),
        (["fetch-weights", "global", "hma", "--from", "x.h5"], "exactly one model"),
        (["fetch-weights", "nonsense"], "unknown model 'nonsense'"),
        (["fetch-weights", "--list", "--force"], "--list cannot"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Downloads from the local mirror


def test_mirror_download_is_cached_and_verified(
    mirror: Mirror, glaviz_home: Path, reference_bytes: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch-weights", "global", "--base-url", mirror.url]) == 0
    assert "global: downloaded from" in capsys.readouterr().out
    target = glaviz_home / "weights" / GLOBAL_FILE
    assert sha(target.read_bytes()) == sha(reference_bytes)
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]
    record = json.loads((glaviz_home / "weights" / (GLOBAL_FILE + ".info.json")).read_text())
    assert record["sha256"] == sha(reference_bytes)
    assert record["feature_groups"] == {"optical": 6, "dem": 2} and record["patch_size"] == 384

    resolved = resolve_weights("global")
    assert resolved.path == target and resolved.entry is not None
    assert resolved.entry.name == "global"

    # Fetching again is a no-op: no request reaches the mirror.
    assert main(["fetch-weights", "global", "--base-url", mirror.url]) == 0
    assert "already cached" in capsys.readouterr().out
    assert mirror.gets(GLOBAL_FILE) == [None]


def test_http_404_is_an_error_and_leaves_nothing(
    mirror: Mirror,
    glaviz_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GLAVIZ_WEIGHTS_URL", mirror.url)  # the environment names the mirror
    assert main(["fetch-weights", "hma"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "glavitu_finetuning_HMA_weights.h5" in err
    assert "--from FILE" in err
    assert mirror.gets("glavitu_finetuning_HMA_weights.h5") == [None]  # a 404 is not retried
    assert cache_files(glaviz_home) == []


def test_server_errors_are_retried(mirror: Mirror, reference_bytes: bytes) -> None:
    mirror.faults.extend(["500", "500"])
    result = fetch_model("global", base_url=mirror.url, policy=FAST)
    assert result.status == "downloaded" and result.sha256 == sha(reference_bytes)
    assert len(mirror.gets(GLOBAL_FILE)) == 3


def test_server_errors_give_up_after_the_retry_budget(mirror: Mirror, glaviz_home: Path) -> None:
    mirror.faults.extend(["500"] * 5)
    with pytest.raises(DownloadError, match=r"after 3 attempt\(s\): HTTP 500"):
        fetch_model("global", base_url=mirror.url, policy=FAST)
    assert cache_files(glaviz_home) == []


def test_dropped_connection_resumes_with_range(mirror: Mirror, reference_bytes: bytes) -> None:
    mirror.faults.append("drop")
    result = fetch_model("global", base_url=mirror.url, policy=FAST)
    assert result.sha256 == sha(reference_bytes)
    first, second = mirror.gets(GLOBAL_FILE)
    assert first is None
    assert 0 < resumed_at(second) <= len(reference_bytes) // 3


def test_interrupted_download_resumes_in_the_next_run(
    mirror: Mirror, glaviz_home: Path, reference_bytes: bytes
) -> None:
    mirror.faults.extend(["drop", "500"])
    one_try = RetryPolicy(attempts=1, backoff_s=0.01, max_total_attempts=2)
    with pytest.raises(DownloadError, match="next fetch resumes it"):
        fetch_model("global", base_url=mirror.url, policy=one_try)
    assert GLOBAL_FILE + ".part" in cache_files(glaviz_home)
    assert GLOBAL_FILE not in cache_files(glaviz_home)

    result = fetch_model("global", base_url=mirror.url, policy=FAST)
    assert result.sha256 == sha(reference_bytes)
    assert 0 < resumed_at(mirror.gets(GLOBAL_FILE)[-1]) <= len(reference_bytes) // 3
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]


@pytest.mark.parametrize("damage", ["truncated", "not-hdf5"])
def test_damaged_file_is_refused_and_nothing_is_left(
    damage: str,
    mirror: Mirror,
    glaviz_home: Path,
    reference_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = reference_bytes[: len(reference_bytes) // 2] if damage == "truncated" else b"<html>" * 99
    mirror.files[GLOBAL_FILE] = bad
    assert main(["fetch-weights", "global", "--base-url", mirror.url]) == 1
    err = capsys.readouterr().err
    assert "refused as model 'global'" in err and "deleted" in err
    assert mirror.url in err and ".part" not in err
    assert cache_files(glaviz_home) == []


def test_wrong_model_is_refused(mirror: Mirror, glaviz_home: Path, reference_bytes: bytes) -> None:
    # The mirror holds the global model under the region-encoding model's name.
    mirror.files["glavitu_regionencoding_weights.h5"] = reference_bytes
    with pytest.raises(WeightsError, match="location input size 0, expected 12"):
        fetch_model("region-encoding", base_url=mirror.url, policy=FAST)
    assert cache_files(glaviz_home) == []


def test_pinned_sha256_is_enforced(
    mirror: Mirror, glaviz_home: Path, reference_bytes: bytes
) -> None:
    entry = load_registry().require("global")
    wrong = entry.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(WeightsError, match="sha256"):
        fetch_model(wrong, base_url=mirror.url, policy=FAST)
    assert cache_files(glaviz_home) == []

    right = entry.model_copy(update={"sha256": sha(reference_bytes)})
    assert fetch_model(right, base_url=mirror.url, policy=FAST).status == "downloaded"


def test_from_imports_a_hand_downloaded_file(
    tmp_path: Path, glaviz_home: Path, reference_bytes: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    download = tmp_path / "Downloads" / GLOBAL_FILE
    download.parent.mkdir()
    download.write_bytes(reference_bytes)
    assert main(["fetch-weights", "global", "--from", str(download)]) == 0
    assert "imported from" in capsys.readouterr().out
    assert sha((glaviz_home / "weights" / GLOBAL_FILE).read_bytes()) == sha(reference_bytes)
    assert resolve_weights("global").source == "cache"
    # The same file again is a no-op.
    assert import_model("global", download).status == "cached"

    # A different, invalid file is refused and the cached one is untouched.
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert main(["fetch-weights", "global", "--from", str(junk), "--force"]) == 1
    assert "nothing was imported" in capsys.readouterr().err
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]

    # Another model's published file under the wrong name is caught before anything is copied.
    assert main(["fetch-weights", "hma", "--from", str(download)]) == 2
    assert "is the published file of model 'global'" in capsys.readouterr().err


def test_force_downloads_again(
    mirror: Mirror, tmp_path: Path, glaviz_home: Path, reference_bytes: bytes
) -> None:
    source = tmp_path / GLOBAL_FILE
    source.write_bytes(reference_bytes)
    assert import_model("global", source).status == "imported"

    assert fetch_model("global", base_url=mirror.url, policy=FAST).status == "cached"
    assert mirror.gets(GLOBAL_FILE) == []

    assert main(["fetch-weights", "global", "--base-url", mirror.url, "--force"]) == 0
    assert mirror.gets(GLOBAL_FILE) == [None]
    record = json.loads((glaviz_home / "weights" / (GLOBAL_FILE + ".info.json")).read_text())
    assert record["source"] == mirror.url + GLOBAL_FILE

    # A forced download that fails verification keeps the previously verified file.
    mirror.files[GLOBAL_FILE] = reference_bytes[:1000]
    with pytest.raises(WeightsError):
        fetch_model("global", base_url=mirror.url, force=True, policy=FAST)
    assert sha((glaviz_home / "weights" / GLOBAL_FILE).read_bytes()) == sha(reference_bytes)


def test_concurrent_fetches_end_with_one_valid_file(
    mirror: Mirror, glaviz_home: Path, reference_bytes: bytes
) -> None:
    mirror.throttle_s = 0.01  # ~1.6 s transfer, so the second fetch arrives mid-download
    results: dict[str, Any] = {}

    def fetch(key: str) -> None:
        try:
            results[key] = fetch_model("global", base_url=mirror.url, policy=FAST)
        except Exception as exc:  # reported by the assertions below
            results[key] = exc

    first = threading.Thread(target=fetch, args=("first",))
    first.start()
    assert mirror.started.wait(timeout=30)
    second = threading.Thread(target=fetch, args=("second",))
    second.start()
    for thread in (first, second):
        thread.join(timeout=120)
        assert not thread.is_alive()

    assert results["first"].status == "downloaded", results
    assert results["second"].status == "cached", results
    assert len(mirror.gets(GLOBAL_FILE)) == 1
    assert sha((glaviz_home / "weights" / GLOBAL_FILE).read_bytes()) == sha(reference_bytes)
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]


def test_mirror_can_be_a_folder(tmp_path: Path, glaviz_home: Path, reference_bytes: bytes) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / GLOBAL_FILE).write_bytes(reference_bytes)
    result = fetch_model("global", base_url=folder.as_uri())
    assert result.status == "downloaded" and result.sha256 == sha(reference_bytes)
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]


def test_all_fetches_what_the_mirror_has_and_names_the_rest(
    mirror: Mirror, glaviz_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch-weights", "--all", "--base-url", mirror.url]) == 1
    captured = capsys.readouterr()
    assert "global: downloaded from" in captured.out
    assert "13 of 15 models were not fetched (global-insar, region-encoding, alp" in captured.err
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]


def test_packaged_model_needs_no_download(
    monkeypatch: pytest.MonkeyPatch, glaviz_home: Path
) -> None:
    import glaviz.registry.registry as registry_module

    registry = load_registry()
    demo = registry.require("global").model_copy(
        update={
            "name": "packaged-test",
            "aliases": (),
            "file": "glavitu_demo_weights.h5",
            "packaged": "data/calibration/glavitu_global_softmax.json",  # any packaged file
        }
    )
    extended = registry.model_copy(update={"models": (*registry.models, demo)})
    monkeypatch.setattr(registry_module, "load_registry", lambda: extended)

    resolved = resolve_weights("packaged-test")
    assert resolved.source == "package" and resolved.entry is demo
    assert resolved.path == calibration_path("glavitu_global_softmax")
    assert fetch_model(demo).status == "packaged"
    assert cache_files(glaviz_home) == []
    # The real built-in demo bundle resolves without any download.
    builtin = resolve_weights("demo")
    assert builtin.source == "package" and builtin.path.name == "demo.glaviz"
    # Its pinned digest must follow the bundle when the demo model is retrained.
    assert builtin.entry is not None
    assert hashlib.sha256(builtin.path.read_bytes()).hexdigest() == builtin.entry.sha256
