"""``glaviz fetch-weights``: registry, resolution, and the verified, resumable weights cache.

A local HTTP server on 127.0.0.1 (tests/fake_servers.py) stands in for a mirror and for Google
Drive. It serves a small GlaViTU checkpoint generated in the published Keras 2 HDF5 format (reduced
model size; the registry checks feature groups, location size and patch size, and every tensor's
shape against the architecture read from the file), and injects faults on demand: HTTP errors,
connections dropped mid-file, Drive's confirmation, quota and sign-in pages, truncated files.
Nothing here touches the network, except ``network``-marked tests run by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glaviz.cli.app import main
from glaviz.errors import ConfigError, DownloadError, WeightsError
from glaviz.published.groups import REGIONS
from glaviz.registry import (
    RetryPolicy,
    cached_path,
    calibration_path,
    fetch_model,
    import_model,
    load_registry,
    resolve_weights,
)
from tests.fake_servers import FOLDER_MIME, FakeServer, running_server
from tests.helpers import error_line, write_keras2_checkpoint

REFERENCE = Path(__file__).parents[1].parent / "shared" / "reference"
GLOBAL_FILE = "glavitu_global_weights.h5"
FOLDER_ID = "1PPtcBUg6Ls42bgSqpM53Ud8G2MOMV70s"
GLOBAL_ID = "1HLIVlWuGfMx_jZQleHlQmuzvzHVMRTOd"
HMA_ID = "1hNRFR55MtkQjSH4ZRBcfswPNXnhafQ6i"

#: Retries without the user-facing pauses, and a bounded wait on a stuck server.
#: Small chunks, so that a connection dropped a third into the small test file keeps some bytes.
FAST = RetryPolicy(
    attempts=3, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=20, chunk_size=1 << 15
)


# --------------------------------------------------------------------------------------------------
# Fixtures: isolated cache, reference bytes, and a fault-injecting mirror


@pytest.fixture(autouse=True)
def glaviz_home(isolated_home: Path) -> Path:
    return isolated_home


@pytest.fixture(scope="module")
def reference_bytes(published_checkpoint_bytes: bytes) -> bytes:
    return published_checkpoint_bytes


@pytest.fixture(scope="module")
def region_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The same in the region-encoding layout (location input of 12)."""
    path = tmp_path_factory.mktemp("weights") / "glavitu_regionencoding_weights.h5"
    return write_keras2_checkpoint(path, location="region", location_size=12, seed=4).read_bytes()


@pytest.fixture
def mirror(reference_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The fake server as mirror (holding the global model) and as an empty Google Drive."""
    with running_server() as server:
        server.files[GLOBAL_FILE] = reference_bytes
        server.folders[FOLDER_ID] = []
        monkeypatch.setenv("GLAVIZ_DRIVE_URL", server.url)
        yield server


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
    # The weights are on the authors' Drive folder; two file ids are known, the rest by name.
    assert registry.drive.folder_id == FOLDER_ID
    assert {e.name: e.drive_id for e in published if e.drive_id} == {
        "global": GLOBAL_ID,
        "hma": HMA_ID,
    }

    glob = registry.require("global")
    assert glob.file == GLOBAL_FILE and glob.feature_groups == {"optical": 6, "dem": 2}
    assert glob.location_size is None and glob.unconfirmed == ("drive_id",)
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
    assert " yes " in lines["global"] and "unrecorded" in lines["global"]  # no .info.json
    assert lines["hma"].rstrip().endswith("no")
    assert "glavitu_finetuning_SVAL_weights.h5" in out and str(glaviz_home) in out


def test_offline_fails_fast_in_one_line_naming_the_drive(
    glaviz_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The autouse fixture points the Drive at a port where nothing listens, as when offline.
    started = time.monotonic()
    assert main(["fetch-weights", "global"]) == 1
    assert time.monotonic() - started < 60
    line = error_line(capsys)
    assert f"uc?export=download&id={GLOBAL_ID}" in line and "failed after 2 attempt(s)" in line
    assert f"drive.google.com/drive/folders/{FOLDER_ID}" in line
    assert "glaviz fetch-weights global --from FILE" in line
    assert "10.11582" not in line and "archive" not in line  # the archive holds no weights
    assert cache_files(glaviz_home) == []


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
    mirror: FakeServer,
    glaviz_home: Path,
    reference_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
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
    mirror: FakeServer,
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


def test_server_errors_are_retried(mirror: FakeServer, reference_bytes: bytes) -> None:
    mirror.faults.extend(["500", "500"])
    result = fetch_model("global", base_url=mirror.url, policy=FAST)
    assert result.status == "downloaded" and result.sha256 == sha(reference_bytes)
    assert len(mirror.gets(GLOBAL_FILE)) == 3


def test_server_errors_give_up_after_the_retry_budget(
    mirror: FakeServer, glaviz_home: Path
) -> None:
    mirror.faults.extend(["500"] * 5)
    with pytest.raises(DownloadError, match=r"after 3 attempt\(s\): HTTP 500"):
        fetch_model("global", base_url=mirror.url, policy=FAST)
    assert cache_files(glaviz_home) == []


def test_dropped_connection_resumes_with_range(mirror: FakeServer, reference_bytes: bytes) -> None:
    mirror.faults.append("drop")
    result = fetch_model("global", base_url=mirror.url, policy=FAST)
    assert result.sha256 == sha(reference_bytes)
    first, second = mirror.gets(GLOBAL_FILE)
    assert first is None
    assert 0 < resumed_at(second) <= len(reference_bytes) // 3


def test_interrupted_download_resumes_in_the_next_run(
    mirror: FakeServer, glaviz_home: Path, reference_bytes: bytes
) -> None:
    mirror.faults.extend(["drop", "500"])
    one_try = RetryPolicy(attempts=1, backoff_s=0.01, max_total_attempts=2, chunk_size=1 << 15)
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
    mirror: FakeServer,
    glaviz_home: Path,
    reference_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = reference_bytes[: len(reference_bytes) // 2] if damage == "truncated" else b"<html>" * 99
    mirror.files[GLOBAL_FILE] = bad
    assert main(["fetch-weights", "global", "--base-url", mirror.url]) == 1
    err = capsys.readouterr().err
    if damage == "truncated":
        assert "refused as model 'global'" in err and "deleted" in err
    else:  # an HTML page is never taken for the file; the Drive is tried next
        assert "answered with an HTML page" in err and "nothing was kept" in err
    assert mirror.url in err and ".part" not in err
    assert cache_files(glaviz_home) == []


def test_wrong_model_is_refused(
    mirror: FakeServer, glaviz_home: Path, reference_bytes: bytes
) -> None:
    # The mirror holds the global model under the region-encoding model's name.
    mirror.files["glavitu_regionencoding_weights.h5"] = reference_bytes
    with pytest.raises(WeightsError, match="location input size 0, expected 12"):
        fetch_model("region-encoding", base_url=mirror.url, policy=FAST)
    assert cache_files(glaviz_home) == []


def test_pinned_sha256_is_enforced(
    mirror: FakeServer, glaviz_home: Path, reference_bytes: bytes
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
    mirror: FakeServer, tmp_path: Path, glaviz_home: Path, reference_bytes: bytes
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
    mirror: FakeServer, glaviz_home: Path, reference_bytes: bytes
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
    mirror: FakeServer, glaviz_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch-weights", "--all", "--base-url", mirror.url]) == 1
    captured = capsys.readouterr()
    assert "global: downloaded from" in captured.out
    assert "13 of 15 models were not fetched (global-insar, region-encoding, alp" in captured.err
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]


def test_packaged_model_needs_no_download(
    monkeypatch: pytest.MonkeyPatch, glaviz_home: Path
) -> None:
    import glaviz.registry.catalogue as registry_module

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


# --------------------------------------------------------------------------------------------------
# Google Drive, imitated on 127.0.0.1


def drive_requests(server: FakeServer) -> list[str]:
    return [p for p in server.paths() if p.startswith(("uc?", "download?", "drive/folders/"))]


def test_drive_direct_file_by_id(
    mirror: FakeServer,
    glaviz_home: Path,
    reference_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mirror.drive[GLOBAL_ID] = reference_bytes
    assert main(["fetch-weights", "global"]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {sha(reference_bytes)}" in out  # shown after the download
    assert f"uc?export=download&id={GLOBAL_ID}" in out
    assert drive_requests(mirror) == [f"uc?export=download&id={GLOBAL_ID}"]
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]


def test_drive_confirmation_page_then_file(mirror: FakeServer, reference_bytes: bytes) -> None:
    mirror.drive[GLOBAL_ID] = reference_bytes
    mirror.drive_modes[GLOBAL_ID] = "confirm"
    result = fetch_model("global", policy=FAST)
    assert result.status == "downloaded" and result.sha256 == sha(reference_bytes)
    first, second = drive_requests(mirror)
    assert first == f"uc?export=download&id={GLOBAL_ID}"
    assert second.startswith(f"download?id={GLOBAL_ID}&export=download&confirm=t&uuid=")
    assert result.source == mirror.url + second


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("quota", "download quota is exceeded (Too many users have viewed"),
        ("access", "asks to sign in"),
        ("html", "answered with an HTML page ('Google Drive - Page Not Found'"),
    ],
)
def test_drive_refusal_pages_are_clear_errors_and_cache_nothing(
    mode: str,
    message: str,
    mirror: FakeServer,
    glaviz_home: Path,
    reference_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mirror.drive[GLOBAL_ID] = reference_bytes
    mirror.drive_modes[GLOBAL_ID] = mode
    assert main(["fetch-weights", "global"]) == 1
    line = error_line(capsys)
    assert message in line and GLOBAL_FILE in line
    assert f"{mirror.url}uc?export=download&id={GLOBAL_ID}" in line  # names the source
    assert cache_files(glaviz_home) == []


def test_drive_truncated_file_is_refused(
    mirror: FakeServer, glaviz_home: Path, reference_bytes: bytes
) -> None:
    mirror.drive[GLOBAL_ID] = reference_bytes
    mirror.drive_modes[GLOBAL_ID] = "truncated"
    with pytest.raises(WeightsError, match="refused as model 'global'"):
        fetch_model("global", policy=FAST)
    assert cache_files(glaviz_home) == []


def test_drive_folder_listing_resolves_a_file_by_name(
    mirror: FakeServer, glaviz_home: Path, reference_bytes: bytes
) -> None:
    alp = "glavitu_finetuning_ALP_weights.h5"
    mirror.folders[FOLDER_ID] = [
        (GLOBAL_ID, GLOBAL_FILE, "application/x-hdf5"),
        ("1subFolderId0000000", "regional", FOLDER_MIME),
    ]
    mirror.folders["1subFolderId0000000"] = [("1alpFileId00000000000", alp, "application/x-hdf5")]
    mirror.drive["1alpFileId00000000000"] = reference_bytes
    result = fetch_model("alp", policy=FAST)
    assert result.status == "downloaded" and result.path.name == alp
    assert drive_requests(mirror) == [
        f"drive/folders/{FOLDER_ID}?hl=en",
        "drive/folders/1subFolderId0000000?hl=en",
        "uc?export=download&id=1alpFileId00000000000",
    ]

    # A name the folder does not list is an error that says what it does list.
    with pytest.raises(DownloadError, match=rf"no file named glavitu_finetuning_NZ.*{GLOBAL_FILE}"):
        fetch_model("nz", policy=FAST)


def test_mirror_comes_before_the_drive(mirror: FakeServer, reference_bytes: bytes) -> None:
    mirror.drive[HMA_ID] = reference_bytes
    hma = "glavitu_finetuning_HMA_weights.h5"
    # The mirror lacks hma: the Drive serves it after the mirror's 404.
    assert fetch_model("hma", base_url=mirror.url, policy=FAST).status == "downloaded"
    assert mirror.paths() == [hma, f"uc?export=download&id={HMA_ID}"]
    # The mirror has global: the Drive is never asked.
    mirror.requests.clear()
    assert (
        fetch_model("global", base_url=mirror.url, policy=FAST).source == mirror.url + GLOBAL_FILE
    )
    assert mirror.paths() == [GLOBAL_FILE]


def test_json_and_list_show_the_sha256(
    mirror: FakeServer, reference_bytes: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.drive[GLOBAL_ID] = reference_bytes
    assert main(["fetch-weights", "global", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (model,) = data["models"]
    assert model["status"] == "downloaded" and model["sha256"] == sha(reference_bytes)
    assert model["sha256_pinned"] is False and data["failed"] == {}

    assert main(["fetch-weights", "--list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["models"]}
    assert rows["global"]["sha256"] == sha(reference_bytes) and rows["global"]["cached"]
    assert rows["hma"]["drive_id"] == HMA_ID and rows["hma"]["sha256"] is None
    assert main(["fetch-weights", "--list", "global"]) == 0
    assert sha(reference_bytes) in capsys.readouterr().out


def test_user_registry_pins_the_sha256(
    mirror: FakeServer,
    tmp_path: Path,
    glaviz_home: Path,
    reference_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mirror.drive[GLOBAL_ID] = reference_bytes
    override = tmp_path / "registry.toml"
    monkeypatch.setenv("GLAVIZ_REGISTRY", str(override))
    override.write_text(f'[[model]]\nname = "global"\nsha256 = "{"0" * 64}"\n')
    assert main(["fetch-weights", "global"]) == 1
    assert "the registry pins 0000" in error_line(capsys)
    assert cache_files(glaviz_home) == []

    override.write_text(f'[[model]]\nname = "global"\nsha256 = "{sha(reference_bytes)}"\n')
    assert main(["fetch-weights", "global", "--json"]) == 0
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert model["sha256_pinned"] and model["sha256"] == sha(reference_bytes)
    # Everything else about the entry comes from the packaged registry.
    assert load_registry().require("global").drive_id == GLOBAL_ID

    # The override is validated like the packaged registry: one error naming the file.
    override.write_text('[[model]]\nname = "global"\nsha256 = "abc"\n')
    assert main(["fetch-weights", "--list"]) == 2
    line = error_line(capsys)
    assert str(override) in line and "sha256" in line and "64 hexadecimal digits" in line


def test_user_registry_adds_a_model(
    mirror: FakeServer, tmp_path: Path, reference_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    override = tmp_path / "registry.toml"
    override.write_text(
        '[[model]]\nname = "mine"\nfile = "glavitu_mine_weights.h5"\nstrategy = "global"\n'
        'features = ["optical", "dem"]\ndrive_id = "1myOwnDriveFileId000"\n'
    )
    monkeypatch.setenv("GLAVIZ_REGISTRY", str(override))
    mirror.drive["1myOwnDriveFileId000"] = reference_bytes
    assert fetch_model("mine", policy=FAST).status == "downloaded"
    assert "global" in load_registry().names()


@pytest.mark.network
def test_real_drive_folder_lists_the_known_files() -> None:
    """By hand only (pytest -m network): the public folder still lists the two known ids."""
    from glaviz.registry.drive import DEFAULT_DRIVE_URL, list_folder

    files = list_folder(FOLDER_ID, base=DEFAULT_DRIVE_URL)
    assert files[GLOBAL_FILE] == GLOBAL_ID
    assert files["glavitu_finetuning_HMA_weights.h5"] == HMA_ID


# --------------------------------------------------------------------------------------------------
# Pins, trust on first use, --sha256 (the attacks themselves: tests/test_hostile_inputs.py)


def test_every_packaged_model_is_pinned_and_matches_its_file() -> None:
    packaged = [e for e in load_registry().models if e.packaged]
    assert [e.name for e in packaged] == ["demo"]
    for entry in packaged:
        resolved = resolve_weights(entry.name)
        assert resolved.source == "package"
        data = resolved.path.read_bytes()
        # Retraining the demo model without updating registry.toml fails here.
        assert (entry.sha256, entry.size) == (sha(data), len(data)), entry.name
        result = fetch_model(entry)
        assert result.status == "packaged" and result.sha256 == entry.sha256


def test_a_packaged_file_that_differs_from_its_pin_is_refused() -> None:
    demo = load_registry().require("demo")
    assert demo.size is not None
    for update in ({"size": demo.size + 1}, {"sha256": "0" * 64}):
        with pytest.raises(WeightsError, match="reinstall glaviz"):
            fetch_model(demo.model_copy(update=update))


def test_an_unpinned_install_warns_once_with_the_recorded_sha256(
    mirror: FakeServer,
    glaviz_home: Path,
    reference_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fetch-weights", "global", "--base-url", mirror.url]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING "), warnings
    record = glaviz_home / "weights" / (GLOBAL_FILE + ".info.json")
    assert f"its sha256 {sha(reference_bytes)} is now recorded in {record}" in warnings[0]
    assert f'add sha256 = "{sha(reference_bytes)}"' in warnings[0]
    assert "GLAVIZ_REGISTRY" in warnings[0] and "--sha256" in warnings[0]
    assert json.loads(record.read_text())["trust"] == "first use"

    # Already cached: checked against the record, nothing installed, nothing to warn about.
    assert main(["fetch-weights", "global", "--base-url", mirror.url]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and f"sha256 {sha(reference_bytes)}" in captured.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fetch-weights", "global", "--sha256", "abc"], "64 hexadecimal digits"),
        (["fetch-weights", "--all", "--sha256", "a" * 64], "--sha256 pins one file"),
        (["fetch-weights", "global", "hma", "--sha256", "a" * 64], "--sha256 pins one file"),
        (["fetch-weights", "--list", "--sha256", "a" * 64], "--list cannot"),
        (["fetch-weights", "demo", "--sha256", "a" * 64], "contradicts the sha256 9591b0627a5a"),
    ],
)
def test_sha256_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_list_shows_every_name_at_80_columns_and_piped(
    tmp_path: Path,
    reference_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    from rich.console import Console

    import glaviz.cli.commands.fetch_weights as command

    source = tmp_path / GLOBAL_FILE
    source.write_bytes(reference_bytes)
    import_model("global", source)  # one recorded (unpinned) digest, and the demo's pinned one
    names = load_registry().names()
    digest, demo = sha(reference_bytes), load_registry().require("demo").sha256
    assert demo is not None

    def first_words(text: str) -> list[str]:
        return [line.split()[0] for line in text.splitlines() if line.strip()]

    # An 80-column terminal: every name, digests cut to 12 hex digits.
    screen = io.StringIO()
    terminal = Console(file=screen, width=80, force_terminal=True, color_system=None)
    with monkeypatch.context() as patch:
        patch.setattr(command, "console", terminal)
        assert main(["fetch-weights", "--list"]) == 0
    shown = screen.getvalue()
    table = [line for line in shown.splitlines() if not line.startswith("cache: ")]
    assert all(len(line) <= 80 for line in table), shown  # (the cache path is one line, as is)
    assert [w for w in first_words(shown) if w in names] == names, shown
    global_row = next(line for line in shown.splitlines() if line.split()[:1] == ["global"])
    assert f"{digest[:12]}…*" in global_row and digest not in shown  # * recorded, not pinned
    assert f"{demo[:12]}…" in shown and f"{demo[:12]}…*" not in shown

    # A pipe (COLUMNS=80 in the environment does not matter): every name, whole digests.
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["fetch-weights", "--list"]) == 0
    piped = capsys.readouterr().out
    assert [w for w in first_words(piped) if w in names] == names, piped
    assert f"{digest}*" in piped and demo in piped

    # --json: the whole digest, and who vouches for it.
    assert main(["fetch-weights", "--list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["models"]}
    assert rows["global"]["sha256"] == digest and rows["global"]["sha256_trust"] == "first use"
    assert rows["demo"]["sha256"] == demo and rows["demo"]["sha256_trust"] == "registry"
    assert rows["hma"]["sha256"] is None and rows["hma"]["sha256_trust"] is None


def test_unconfirmed_features_are_taken_from_a_file_that_names_them(
    mirror: FakeServer, tmp_path: Path, glaviz_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # alp's feature groups are inferred: the file's own, named groups are what deploy must use,
    # even when their band counts equal the registry's guess.
    alp = "glavitu_finetuning_ALP_weights.h5"
    path = write_keras2_checkpoint(tmp_path / alp, features=("optical", "co_pol_sar"), seed=8)
    mirror.files[alp] = path.read_bytes()
    with caplog.at_level("WARNING", logger="glaviz"):
        assert fetch_model("alp", base_url=mirror.url, policy=FAST).status == "downloaded"
    assert "optical+dem differ from the file's optical(6)+co_pol_sar(2)" in caplog.text
    assert resolve_weights("alp").feature_groups == {"optical": 6, "co_pol_sar": 2}


def test_interrupted_fetch_says_that_the_part_is_kept(
    mirror: FakeServer, glaviz_home: Path, reference_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from glaviz.util.progress import Progress

    def interrupt(self: Progress, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # ^C after the first chunk was written

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt) as stopped:
        patch.setattr(Progress, "advance", interrupt)
        fetch_model("global", base_url=mirror.url, policy=FAST)
    part = glaviz_home / "weights" / (GLOBAL_FILE + ".part")
    (note,) = stopped.value.__notes__
    assert f"the partial download {part} ({part.stat().st_size:,} bytes) is kept" in note
    assert "the next 'glaviz fetch-weights global' resumes it" in note

    assert fetch_model("global", base_url=mirror.url, policy=FAST).status == "downloaded"
    assert resumed_at(mirror.gets(GLOBAL_FILE)[-1]) == FAST.chunk_size


# --------------------------------------------------------------------------------------------------
# --weights / --calibration NAME beside a folder of that name


def test_a_folder_does_not_shadow_a_registry_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from glaviz.config import DeployConfig
    from glaviz.config.loading import load_config

    monkeypatch.chdir(tmp_path)
    for folder in ("demo", "global", "mystery"):
        (tmp_path / folder).mkdir()

    # The bare name, and the name as the config reader passes it on (an absolute path, because
    # a folder of that name exists here).
    config = load_config(DeployConfig, cli={"stack": "s.tif", "weights": "demo"})
    for spec in ("demo", config.weights):
        resolved = resolve_weights(spec)
        assert resolved.source == "package" and resolved.path.name == "demo.glaviz", spec
    with caplog.at_level("WARNING", logger="glaviz"):
        resolve_weights(str(tmp_path / "demo"))
    assert f"--weights {tmp_path / 'demo'} is a folder, not a file" in caplog.text
    assert "registry model 'demo'" in caplog.text

    expected = calibration_path("glavitu_global_softmax")
    assert calibration_path("global") == expected
    assert calibration_path(str(tmp_path / "global")) == expected

    with pytest.raises(ConfigError, match=r"'mystery' is no registry model name; known models"):
        resolve_weights("mystery")
    with pytest.raises(ConfigError, match="is a folder, not a calibration file"):
        calibration_path(str(tmp_path / "mystery"))
