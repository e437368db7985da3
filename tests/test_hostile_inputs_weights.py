"""Hostile weights: files served or imported under a registry name that are not that model's file.

No published digest can be learned here (no network), so the attacks are the ones a mirror, a
hijacked Drive link or a mistaken ``--from`` can mount against an unpinned registry entry:

- another architecture under ``global``'s name: a tiny random checkpoint whose inputs are
  optical + co-polarised SAR (6 + 2 bands, like optical + DEM) passed the old check, which
  compared band counts only. It must be refused on every path into the cache: an HTTP mirror, a
  folder mirror, the Google Drive and ``--from``.
- the right architecture with other weights, after a first install: the digest recorded then
  (trust on first use) must refuse it, naming both digests and the deliberate way to accept it.
- a file that is not the digest given with ``--sha256``: refused, and nothing of it is kept.

Every checkpoint is generated here, seeded, in the published Keras 2 layout; the mirror and Drive
are tests/fake_servers.py on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from glaviz.cli.app import main
from glaviz.errors import WeightsError
from glaviz.registry import fetch_model, import_model, resolve_weights
from glaviz.registry.download import RetryPolicy
from tests.fake_servers import FakeServer, refused_url, running_server
from tests.helpers import error_line, write_keras2_checkpoint

GLOBAL_FILE = "glavitu_global_weights.h5"
GLOBAL_ID = "1HLIVlWuGfMx_jZQleHlQmuzvzHVMRTOd"
FOLDER_ID = "1PPtcBUg6Ls42bgSqpM53Ud8G2MOMV70s"
FAST = RetryPolicy(attempts=3, backoff_s=0.01, connect_timeout_s=5, read_timeout_s=20)


@pytest.fixture(autouse=True)
def glaviz_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("GLAVIZ_HOME", str(home))
    monkeypatch.delenv("GLAVIZ_WEIGHTS_URL", raising=False)
    monkeypatch.delenv("GLAVIZ_REGISTRY", raising=False)
    monkeypatch.setenv("GLAVIZ_DRIVE_URL", refused_url())  # never the real Drive
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return home


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Stands in for the published global model: optical + DEM, no location input."""
    path = tmp_path_factory.mktemp("weights") / GLOBAL_FILE
    return write_keras2_checkpoint(path, seed=3).read_bytes()


@pytest.fixture(scope="module")
def impostor(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Same architecture as ``genuine``, other (random) weights: only a digest tells them apart."""
    path = tmp_path_factory.mktemp("weights") / GLOBAL_FILE
    return write_keras2_checkpoint(path, seed=99).read_bytes()


@pytest.fixture(scope="module")
def sar_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Another architecture with the same band counts: optical(6) + co_pol_sar(2)."""
    path = tmp_path_factory.mktemp("weights") / GLOBAL_FILE
    return write_keras2_checkpoint(path, features=("optical", "co_pol_sar"), seed=5).read_bytes()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The fake server as a mirror and as the Google Drive (both empty until a test fills them)."""
    with running_server() as fake:
        fake.folders[FOLDER_ID] = []
        monkeypatch.setenv("GLAVIZ_DRIVE_URL", fake.url)
        yield fake


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_files(home: Path) -> list[str]:
    folder = home / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------------------------------
# Another architecture under the name: refused on every path into the cache


@pytest.mark.parametrize("path", ["http-mirror", "folder-mirror", "drive", "from"])
def test_another_architecture_served_as_global_is_refused_on_every_path(
    path: str,
    server: FakeServer,
    sar_model: bytes,
    tmp_path: Path,
    glaviz_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["fetch-weights", "global"]
    if path == "http-mirror":
        server.files[GLOBAL_FILE] = sar_model
        argv += ["--base-url", server.url]
    elif path == "folder-mirror":
        share = tmp_path / "share"
        share.mkdir()
        (share / GLOBAL_FILE).write_bytes(sar_model)
        argv += ["--base-url", str(share)]
    elif path == "drive":
        server.drive[GLOBAL_ID] = sar_model
    else:
        download = tmp_path / "Downloads" / GLOBAL_FILE
        download.parent.mkdir()
        download.write_bytes(sar_model)
        argv += ["--from", str(download)]

    assert main(argv) == 1
    line = error_line(capsys)
    assert "optical(6)+co_pol_sar(2), not the expected optical(6)+dem(2)" in line
    assert "refused as model 'global'" in line
    assert cache_files(glaviz_home) == []  # nothing "verified", nothing kept, not even a record


# --------------------------------------------------------------------------------------------------
# Trust on first use: the first digest decides, until the user accepts another on purpose


def test_a_random_checkpoint_replacing_the_first_download_is_refused(
    server: FakeServer,
    genuine: bytes,
    impostor: bytes,
    glaviz_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.files[GLOBAL_FILE] = genuine
    assert main(["fetch-weights", "global", "--base-url", server.url]) == 0
    err = capsys.readouterr().err
    assert f"model 'global' was installed unpinned: its sha256 {sha(genuine)}" in err
    target = glaviz_home / "weights" / GLOBAL_FILE

    # The mirror now serves other weights of the same architecture under the same name.
    server.files[GLOBAL_FILE] = impostor
    assert main(["fetch-weights", "global", "--base-url", server.url, "--force"]) == 1
    line = error_line(capsys)
    assert f"has sha256 {sha(impostor)}" in line
    assert f"recorded here with sha256 {sha(genuine)}" in line
    assert f"rerun with --force --sha256 {sha(impostor)}" in line
    assert sha(target.read_bytes()) == sha(genuine)  # the trusted file stays
    assert cache_files(glaviz_home) == [GLOBAL_FILE, GLOBAL_FILE + ".info.json"]

    # Deleting the cached file does not reset the trust: only the record does.
    target.unlink()
    with pytest.raises(WeightsError, match=f"recorded here with sha256 {sha(genuine)}"):
        fetch_model("global", base_url=server.url, policy=FAST)
    assert cache_files(glaviz_home) == [GLOBAL_FILE + ".info.json"]

    # Accepting the new file is a deliberate act: its digest, typed by the user.
    argv = ["fetch-weights", "global", "--base-url", server.url, "--force", "--sha256"]
    assert main([*argv, sha(impostor)]) == 0
    assert sha(target.read_bytes()) == sha(impostor)
    record = json.loads((glaviz_home / "weights" / (GLOBAL_FILE + ".info.json")).read_text())
    assert record["sha256"] == sha(impostor) and record["trust"] == "--sha256"


def test_an_import_is_checked_against_the_first_use_record(
    genuine: bytes, impostor: bytes, tmp_path: Path, glaviz_home: Path
) -> None:
    first, second = tmp_path / "first.h5", tmp_path / "second.h5"
    first.write_bytes(genuine)
    second.write_bytes(impostor)
    assert import_model("global", first).sha256 == sha(genuine)

    with pytest.raises(WeightsError, match="nothing was imported") as refused:
        import_model("global", second, force=True)
    assert sha(genuine) in str(refused.value) and sha(impostor) in str(refused.value)
    assert sha((glaviz_home / "weights" / GLOBAL_FILE).read_bytes()) == sha(genuine)

    accepted = import_model("global", second, force=True, sha256=sha(impostor))
    assert accepted.status == "imported" and accepted.sha256 == sha(impostor)


def test_a_cached_file_changed_after_its_install_is_refused(
    genuine: bytes, impostor: bytes, tmp_path: Path, glaviz_home: Path
) -> None:
    source = tmp_path / GLOBAL_FILE
    source.write_bytes(genuine)
    import_model("global", source)
    target = glaviz_home / "weights" / GLOBAL_FILE
    target.write_bytes(impostor)  # swapped behind glaviz's back

    with pytest.raises(WeightsError, match="changed after it was installed") as refused:
        fetch_model("global")
    assert sha(genuine) in str(refused.value) and sha(impostor) in str(refused.value)


# --------------------------------------------------------------------------------------------------
# --sha256: a pin for this one fetch or import


def test_a_download_that_is_not_the_given_sha256_is_refused_and_removed(
    server: FakeServer,
    impostor: bytes,
    genuine: bytes,
    tmp_path: Path,
    glaviz_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.files[GLOBAL_FILE] = impostor
    argv = ["fetch-weights", "global", "--base-url", server.url, "--sha256", sha(genuine)]
    assert main(argv) == 1
    line = error_line(capsys)
    assert f"has sha256 {sha(impostor)}" in line and f"--sha256 asks for {sha(genuine)}" in line
    assert "the download was deleted" in line
    assert cache_files(glaviz_home) == []  # no file, no .part, no record

    download = tmp_path / GLOBAL_FILE
    download.write_bytes(impostor)
    assert main(["fetch-weights", "global", "--from", str(download), "--sha256", sha(genuine)]) == 1
    assert "nothing was imported" in error_line(capsys)
    assert cache_files(glaviz_home) == []

    # The right digest installs it, and a pinned install is not warned about.
    server.files[GLOBAL_FILE] = genuine
    assert main([*argv[:-1], sha(genuine).upper()]) == 0  # any case, as sha256sum users paste
    assert "unpinned" not in capsys.readouterr().err
    assert resolve_weights("global").source == "cache"
