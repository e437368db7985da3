"""``glaviz fetch-dataset``: the archive's files as data, and resumable, md5-verified downloads.

The registry (glaviz/data/datasets.toml) is checked against the table of contents quoted in issue
14. Downloads run against tests/fake_servers.py on 127.0.0.1 imitating the NIRD archive (ranges,
dropped connections, wrong bytes), with the archive record swapped for small generated files of
the same names. Nothing here touches the network, except the ``network`` test run by hand.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import glaviz.registry.archive as archive_module
import glaviz.registry.fetch_dataset as engine
from glaviz.cli.app import main
from glaviz.errors import ConfigError, DownloadError
from glaviz.registry.archive import load_archive, select
from glaviz.registry.download import RetryPolicy
from tests.fake_servers import FakeServer, md5, running_server
from tests.helpers import error_line

#: The table of contents as quoted in issue 14: name → (bytes, md5).
ISSUE_TOC = {
    "20230905_train_global_ps384.hdf5": (243137679016, "eef2724f0ce5451cf821a63328ab13b3"),
    "20230905_val_global_ps384.hdf5": (81435045168, "bd84d0bf932cae7eab92c9e9a4d53645"),
    "20230905_test_global_ps384.hdf5": (86000989312, "fe6c7e9b63b1e8a85f500f2798f6f79c"),
    "gsgm_train_DEMO.hdf5": (24873991224, "40f65c47d378be9880f9f1cfa2938535"),
    "gsgm_val_DEMO.hdf5": (8195045688, "338b36cd501c50cc3fb3728cb5d57164"),
    "gsgm_test_DEMO.hdf5": (8275266000, "03aea14fb8d9543540a45893ba7ccc13"),
    "swiss_alps_features-004.pickle": (2312111277, "cdf7635d0abf0f3b257673863ade1f76"),
    "swiss_alps_reference.tif": (28318524, "cf87dcf4e9872ab33c28d5b16d5ac2e2"),
    "sc1_features-001.pickle": (13860865201, "34a3e6ff6050ea0245b16019a153081c"),
    "sc1_reference.tif": (170109342, "727a6c1a53aec37f7051eed340b4e616"),
    "alaska_features-003.pickle": (10121381043, "e36b5b60655496a71b050ab74fe8c7aa"),
    "alaska_reference.tif": (123961790, "166ef8a5018ced2dbd3b53ab2c36c036"),
    "southern_canada_features-002.pickle": (8410891443, "426e779de8fa8f92dc5804bdf5b4026c"),
    "southern_canada_reference.tif": (99874739, "1a4b48d3929fd8a3da7d187d13228ea2"),
}

FAST = RetryPolicy(attempts=3, backoff_s=0.01, connect_timeout_s=5, chunk_size=1 << 12)


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLAVIZ_DATASET_URL", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def small_archive(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """The archive record with every file replaced by a few seeded KB (same names, true md5)."""
    rng = np.random.default_rng(0)
    real = load_archive()
    contents: dict[str, bytes] = {}
    files = []
    for i, file in enumerate(real.files):
        data = rng.bytes(20_000 + 1_000 * i)
        contents[file.name] = data
        files.append(file.model_copy(update={"size": len(data), "md5": md5(data)}))
    fake = real.model_copy(
        update={"files": tuple(files), "total_bytes": sum(len(d) for d in contents.values())}
    )
    monkeypatch.setattr(archive_module, "load_archive", lambda: fake)
    monkeypatch.setattr(engine, "load_archive", lambda: fake)
    return contents


@pytest.fixture
def nird(small_archive: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The fake server as the archive's download folder, named by $GLAVIZ_DATASET_URL."""
    with running_server() as server:
        server.files.update(small_archive)
        monkeypatch.setenv("GLAVIZ_DATASET_URL", server.url)
        yield server


def folder_files(folder: Path) -> list[str]:
    """Everything in the folder, hidden files and partial downloads included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------------------------------
# The registry (offline)


def test_registry_matches_the_published_table_of_contents() -> None:
    record = load_archive()
    assert {f.name: (f.size, f.md5) for f in record.files} == ISSUE_TOC
    assert record.total_bytes == 487_045_529_767 == sum(f.size for f in record.files)
    assert record.doi == "10.11582/2024.00168" and record.license == "CC-BY-4.0"
    assert record.url(record.files[0]) == (
        "https://data.archive.sigma2.no/dataset/243c5285-2bf0-438f-bf2c-74b7bdba182e/download/"
        "20230905_train_global_ps384.hdf5"
    )
    assert record.confirmed is False  # not fetched from here; the network test checks it


def test_select_by_name_split_and_area() -> None:
    def names(*args: Any, **kwargs: Any) -> list[str]:
        return [f.name for f in select(*args, **kwargs)]

    assert names("benchmark") == [n for n in ISSUE_TOC if n.startswith("20230905")]
    assert names("demo", splits=("val", "test")) == ["gsgm_val_DEMO.hdf5", "gsgm_test_DEMO.hdf5"]
    assert len(names("independent")) == 8
    assert names("independent", areas=("sc1",)) == ["sc1_features-001.pickle", "sc1_reference.tif"]
    assert len(names(None)) == 14
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        select("nope")


def test_list_is_offline_and_shows_all_14_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--list must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert main(["fetch-dataset", "--list"]) == 0
    out = capsys.readouterr().out
    for name, (size, digest) in ISSUE_TOC.items():
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert f"{size:,}" in line and digest in line
    assert "14 files, 487,045,529,767 bytes (487.0 GB)" in out

    assert main(["fetch-dataset", "independent", "--area", "alaska", "--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["files"]
    assert [(r["name"], r["bytes"], r["present"]) for r in rows] == [
        ("alaska_features-003.pickle", 10121381043, False),
        ("alaska_reference.tif", 123961790, False),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fetch-dataset"], "name the dataset"),
        (["fetch-dataset", "everything"], "name: Input should be 'benchmark', 'demo'"),
        (["fetch-dataset", "independent", "--split", "val"], "use --area for independent"),
        (["fetch-dataset", "demo", "--area", "sc1"], "--area selects independent files"),
        (["fetch-dataset", "demo", "--split", "dev"], "split.0: Input should be 'train'"),
        (["fetch-dataset", "demo", "--base-url", "ftp://x"], "is not an http(s):// URL"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in error_line(capsys)


# --------------------------------------------------------------------------------------------------
# Downloads from the imitated archive


def test_download_is_verified_and_atomic(
    nird: FakeServer,
    small_archive: dict[str, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    to = tmp_path / "data"
    assert main(["fetch-dataset", "demo", "--split", "val", "--to", str(to)]) == 0
    assert "gsgm_val_DEMO.hdf5: downloaded from" in capsys.readouterr().out
    assert folder_files(to) == ["gsgm_val_DEMO.hdf5"]  # no .part, no resume record
    assert (to / "gsgm_val_DEMO.hdf5").read_bytes() == small_archive["gsgm_val_DEMO.hdf5"]

    # Present with the archive's size: kept, nothing requested.
    nird.requests.clear()
    assert main(["fetch-dataset", "demo", "--split", "val", "--to", str(to), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["files"]
    assert row["status"] == "present" and nird.requests == []


def test_dropped_connection_resumes_with_a_range_request(
    nird: FakeServer, small_archive: dict[str, bytes], tmp_path: Path
) -> None:
    nird.faults.append("drop")
    file = select("independent", areas=("swiss_alps",))[1]
    (result,) = engine.fetch_files([file], to=tmp_path, policy=FAST)
    assert result.status == "downloaded"
    assert result.path.read_bytes() == small_archive[file.name]
    first, second = nird.gets(file.name)
    assert first is None
    offset = int(re.fullmatch(r"bytes=(\d+)-", second or "").group(1))
    assert 0 < offset <= file.size // 3


def test_interrupted_run_is_resumed_by_the_next(
    nird: FakeServer, small_archive: dict[str, bytes], tmp_path: Path
) -> None:
    nird.faults.extend(["drop", "500"])
    (file,) = select("benchmark", splits=("test",))
    one_try = RetryPolicy(attempts=1, backoff_s=0.01, max_total_attempts=2, chunk_size=1 << 12)
    with pytest.raises(DownloadError, match="next fetch resumes it"):
        engine.fetch_files([file], to=tmp_path, policy=one_try)
    assert file.name not in folder_files(tmp_path) and f"{file.name}.part" in folder_files(tmp_path)

    engine.fetch_files([file], to=tmp_path, policy=FAST)
    assert (tmp_path / file.name).read_bytes() == small_archive[file.name]
    assert nird.gets(file.name)[-1] not in (None, "")  # the second run asked for the rest only
    assert folder_files(tmp_path) == [file.name]


def test_wrong_md5_is_refused_and_nothing_is_left(
    nird: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "sc1_reference.tif"
    good = nird.files[name]
    nird.files[name] = bytes(len(good))  # right size, wrong bytes
    argv = ["fetch-dataset", "independent", "--area", "sc1", "--to", str(tmp_path)]
    assert main(argv) == 1
    line = error_line(capsys)
    assert f"but the archive lists {name} with md5 {md5(good)}" in line
    assert "nothing was kept" in line
    # The features file before it was fine and stays; nothing of the bad one remains.
    assert folder_files(tmp_path) == ["sc1_features-001.pickle"]


def test_free_space_is_checked_before_anything_is_fetched(
    nird: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(engine, "free_bytes", lambda folder: 1000)
    assert main(["fetch-dataset", "benchmark", "--to", str(tmp_path / "new")]) == 1
    line = error_line(capsys)
    needed = sum(len(nird.files[f.name]) for f in select("benchmark"))
    assert f"3 file(s) need {needed:,} bytes" in line and "1,000 bytes (0.0 GB) are free" in line
    assert "--to" in line
    assert nird.requests == [] and not (tmp_path / "new").exists()


def test_a_different_file_under_the_name_is_not_overwritten(
    nird: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gsgm_test_DEMO.hdf5").write_bytes(b"mine")
    argv = ["fetch-dataset", "demo", "--split", "test", "--to", str(tmp_path)]
    assert main(argv) == 3
    assert "exists with 4 bytes" in error_line(capsys)
    assert main([*argv, "--force"]) == 0
    assert (tmp_path / "gsgm_test_DEMO.hdf5").read_bytes() == nird.files["gsgm_test_DEMO.hdf5"]


def test_offline_fails_fast(
    small_archive: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.fake_servers import refused_url

    started = time.monotonic()
    argv = ["fetch-dataset", "demo", "--split", "val", "--to", str(tmp_path / "new")]
    assert main([*argv, "--base-url", refused_url()]) == 1
    assert time.monotonic() - started < 60
    assert "the connection was refused" in error_line(capsys)
    assert folder_files(tmp_path) == []  # not even the folder it would have created


@pytest.mark.network
def test_registry_matches_the_live_table_of_contents() -> None:
    """By hand only (pytest -m network): compare datasets.toml with the archive's own list."""
    import csv
    import io

    import requests

    record = load_archive()
    url = f"{record.base_url}/{record.table_of_contents}"
    text = requests.get(url, timeout=60).text
    rows = list(csv.reader(io.StringIO(text)))
    found = {name: (size, digest) for name, (size, digest) in ISSUE_TOC.items()}
    for name, (size, digest) in found.items():
        row = next(r for r in rows if any(name in cell for cell in r))
        assert str(size) in row and digest in row, row


def test_a_second_run_on_the_same_file_is_refused(nird: FakeServer, tmp_path: Path) -> None:
    import filelock

    (file,) = select("demo", splits=("train",))
    with (
        filelock.FileLock(str(tmp_path / f".{file.name}.lock")),
        pytest.raises(
            DownloadError, match="another glaviz fetch-dataset is downloading gsgm_train_DEMO"
        ),
    ):
        engine.fetch_files([file], to=tmp_path, policy=FAST)
    assert nird.requests == []
    engine.fetch_files([file], to=tmp_path, policy=FAST)
    assert folder_files(tmp_path) == [file.name]  # no lock file left behind


def test_transfer_progress_counts_bytes_with_rate_and_time_left() -> None:
    from rich.progress import DownloadColumn, TimeRemainingColumn, TransferSpeedColumn

    from glaviz.util.progress import Progress

    with Progress(True, total=None, description="x", transfer=True) as bar:
        bar.reset(total=1000, completed=400)  # a download resumed at 400 bytes
        bar.advance(100)
        task = bar._bar.tasks[0]
        assert (task.completed, task.total) == (500, 1000)
        kinds = {type(c) for c in bar._bar.columns}
        assert {DownloadColumn, TransferSpeedColumn, TimeRemainingColumn} <= kinds


def test_an_interrupted_download_says_that_its_part_is_kept(
    nird: FakeServer,
    small_archive: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from glaviz.util.progress import Progress

    def interrupt(self: Progress, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # ^C after the first chunk was written

    (file,) = select("demo", splits=("val",))
    to = tmp_path / "new"
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt) as stopped:
        patch.setattr(Progress, "advance", interrupt)
        engine.fetch_files([file], to=to, policy=FAST)
    part = to / f"{file.name}.part"
    # The interrupt carries the words the CLI prints instead of "no partial outputs were left".
    (note,) = stopped.value.__notes__
    assert note == (
        f"the partial download {part} ({FAST.chunk_size:,} bytes) is kept; "
        "the next run of the same command resumes it"
    )
    assert part.stat().st_size == FAST.chunk_size

    engine.fetch_files([file], to=to, policy=FAST)
    assert nird.gets(file.name)[-1] == f"bytes={FAST.chunk_size}-"
    assert (to / file.name).read_bytes() == small_archive[file.name]


def test_cli_interrupt_says_the_part_is_kept(
    nird: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import os
    import signal

    from glaviz.util.progress import Progress

    monkeypatch.setattr(
        Progress, "advance", lambda self, *a, **k: os.kill(os.getpid(), signal.SIGINT)
    )
    assert main(["fetch-dataset", "demo", "--split", "val", "--to", str(tmp_path)]) == 130
    line = error_line(capsys)
    assert "stopped by SIGINT; the partial download" in line and "resumes it" in line
