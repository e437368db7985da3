"""Leftovers: nothing a failed or killed run wrote outlives it (the fault tour, part C)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from glaviz.runs.atomic import atomic_path, write_text_atomic
from glaviz.runs.outputs import LOCK_NAME, OutputFolder
from glaviz.samples import make_scene
from tests.capped import glaviz


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_taking_an_output_folder_sweeps_what_killed_runs_left(tmp_path: Path) -> None:
    out = tmp_path / "scene.glaviz"
    out.mkdir()
    dead = _dead_pid()
    stale = [
        out / f".outlines.partial-{dead}.tif",
        out / f".outlines.tif.scratch-{dead}",
        out / f".outlines.tif.scratch-{dead}.aux.xml",
        out / f".run.partial-{dead}.json",
    ]
    for path in stale:
        path.write_bytes(b"x" * 100)
    (out / LOCK_NAME).write_text("")  # a lock file whose holder was killed
    alive = out / ".outlines.partial-1.tif"  # pid 1 always exists: another live writer's file
    alive.write_bytes(b"x")
    with OutputFolder(out, ("outlines.tif", "run.json"), overwrite=True) as folder:
        folder.temp("outlines.tif").write_bytes(b"new")
        folder.commit()
    assert sorted(p.name for p in folder.swept) == sorted(p.name for p in stale)
    assert sorted(p.name for p in out.iterdir()) == sorted(["outlines.tif", alive.name])


def test_an_atomic_write_sweeps_the_temporary_files_of_dead_writers(tmp_path: Path) -> None:
    target = tmp_path / "stack.tif"
    dead = _dead_pid()
    leftover = tmp_path / f".stack.tif.{dead}-k2j3h4.part"
    leftover.write_bytes(b"x" * 10)
    write_text_atomic(target, "done")
    assert not leftover.exists() and target.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]


def test_a_failed_atomic_write_removes_the_folders_it_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.txt"
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk gone")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_failed_features_leaves_no_folders(tmp_path: Path) -> None:
    files = make_scene(tmp_path / "scene", size=(64, 64), seed=1)
    broken = tmp_path / "optical.tif"
    broken.write_bytes(files.optical.read_bytes()[: files.optical.stat().st_size // 2])
    out = tmp_path / "out" / "new1" / "new2" / "f.tif"
    outcome = glaviz(
        "features", "-o", str(out), "--optical", str(broken), "--elevation", str(files.elevation)
    )
    assert outcome.returncode == 1, outcome.stderr
    assert len(outcome.error_lines) == 1 and "optical.tif" in outcome.error_lines[0]
    assert not (tmp_path / "out").exists()


def test_scene_ids_may_not_take_the_names_of_the_job_outputs(tmp_path: Path) -> None:
    stack = tmp_path / "s.tif"
    stack.write_bytes(b"")
    for reserved in ("summary.csv", "Outlines.GPKG"):
        job = tmp_path / "job.toml"
        job.write_text(
            f'output = "out"\n[deploy]\nweights = "demo"\n[[scene]]\nid = "{reserved}"\n'
            'stack = "s.tif"\n'
        )
        outcome = glaviz("batch", str(job), cwd=tmp_path)
        assert outcome.returncode == 2, outcome.stderr
        assert len(outcome.error_lines) == 1
        assert "is the name of a file glaviz batch writes" in outcome.error_lines[0]
        assert not (tmp_path / "out").exists()


def test_the_local_cluster_keeps_its_scratch_in_the_output_and_removes_it(
    tmp_path: Path, monkeypatch
) -> None:
    import tempfile

    from glaviz.batch.cluster import open_cluster

    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out"
    with open_cluster("local", workers=1, scratch=output) as cluster:
        worker_tmp = cluster.client.submit(tempfile.gettempdir, pure=False).result()
        scratch = [p.name for p in output.iterdir()]
    assert len(scratch) == 1 and scratch[0].startswith(".dask-scratch-")
    assert Path(worker_tmp).is_relative_to(output / scratch[0])
    assert list(output.iterdir()) == []
    assert not (tmp_path / "dask-scratch-space").exists()


def test_tensorflow_processes_keep_their_temp_files_in_a_folder_of_their_own(
    tmp_path: Path,
) -> None:
    code = (
        "import tempfile, sys\n"
        "from glaviz.util.leftovers import use_private_tempdir\n"
        "private = use_private_tempdir()\n"
        "open(tempfile.mkstemp(prefix='__autograph_generated_file', suffix='.py')[1], 'w')\n"
        "print(private)\n"
    )
    dead = _dead_pid()
    stale = tmp_path / f"glaviz-{dead}-abcd"
    stale.mkdir()
    (stale / "__autograph_generated_file1.py").write_text("x")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"TMPDIR": str(tmp_path)}
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent == tmp_path
    assert list(tmp_path.iterdir()) == []  # its own folder went at exit, the stale one before


def test_inventory_takes_the_elevation_band_of_a_stack_and_refuses_other_multiband_dems(
    tmp_path: Path,
) -> None:
    import geopandas as gpd
    import numpy as np
    import rasterio

    from tests.helpers import write_stack

    stack = write_stack(tmp_path / "stack.tif", height=70, width=90)
    with rasterio.open(stack) as src:
        profile = src.profile
        ice = src.read(1) > 0.5
        elevation = src.read(src.descriptions.index("elevation") + 1)
    profile.update(count=1, dtype="uint8", nodata=255)
    outlines = tmp_path / "outlines.tif"
    with rasterio.open(outlines, "w", **profile) as dst:
        dst.write(ice.astype(np.uint8), 1)
    out = tmp_path / "glaciers.gpkg"
    done = glaviz("inventory", str(outlines), "--dem", str(stack), "-o", str(out))
    assert done.returncode == 0, done.stderr
    glaciers = gpd.read_file(out, layer="glaciers")
    assert len(glaciers) and glaciers.zmin_m.min() >= float(np.nanmin(elevation)) - 1
    anonymous = tmp_path / "three.tif"
    profile.update(count=3, dtype="float32", nodata=None)
    with rasterio.open(anonymous, "w", **profile) as dst:
        dst.write(np.ones((3, 70, 90), np.float32))
    refused = glaviz(
        "inventory", str(outlines), "--dem", str(anonymous), "-o", str(tmp_path / "g2.gpkg")
    )
    assert refused.returncode == 1 and len(refused.error_lines) == 1
    assert "has 3 bands and none is described as 'elevation'" in refused.error_lines[0]


def test_a_cached_weights_file_swapped_for_one_of_the_same_size_is_hashed_again(
    tmp_path: Path,
) -> None:
    import hashlib
    import json
    import os

    from glaviz.registry.cache import info_path
    from glaviz.runs.records import weights_sha256

    weights = tmp_path / "glavitu_global_weights.h5"
    weights.write_bytes(b"a" * 64)
    info = info_path(weights)
    info.write_text(json.dumps({"size": 64, "sha256": hashlib.sha256(b"a" * 64).hexdigest()}))
    assert weights_sha256(weights) == hashlib.sha256(b"a" * 64).hexdigest()
    weights.write_bytes(b"b" * 64)  # replaced by hand after the record was written
    later = info.stat().st_mtime_ns + 1_000_000_000
    os.utime(weights, ns=(later, later))
    assert weights_sha256(weights) == hashlib.sha256(b"b" * 64).hexdigest()


def test_skip_existing_recomputes_a_run_whose_outputs_were_removed_or_cut(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import json

    from glaviz.cli.app import main
    from tests.helpers import tiny_bundle, write_stack

    monkeypatch.chdir(tmp_path)
    write_stack(tmp_path / "stack.tif")
    tiny_bundle(tmp_path / "tiny.glaviz")
    args = ["deploy", "stack.tif", "--weights", "tiny.glaviz", "-o", "out", "--no-quicklook"]
    assert main(args) == 0
    recorded = json.loads((tmp_path / "out" / "run.json").read_text())["outputs"]
    assert set(recorded) == {"outlines.tif", "confidence.tif", "outlines.gpkg"}
    for name, meta in recorded.items():
        assert (tmp_path / "out" / name).stat().st_size == meta["size"]
    capsys.readouterr()
    (tmp_path / "out" / "confidence.tif").unlink()
    outlines = tmp_path / "out" / "outlines.tif"
    outlines.write_bytes(outlines.read_bytes()[:100])
    assert main([*args, "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert "skipped" not in captured.out + captured.err
    assert "incomplete" in captured.err and "computing it again" in captured.err
    for name, meta in recorded.items():
        assert (tmp_path / "out" / name).stat().st_size == meta["size"]
    assert main([*args, "--skip-existing"]) == 0
    assert "skipped: " in capsys.readouterr().out


def test_skip_existing_recomputes_a_cut_single_file_output(tmp_path: Path, capsys) -> None:
    from glaviz.cli.app import main

    files = make_scene(tmp_path / "scene", size=(64, 64), seed=2)
    stack = tmp_path / "stack.tif"
    args = ["features", "-o", str(stack), "--optical", str(files.optical)]
    args += ["--elevation", str(files.elevation), "--skip-existing"]
    assert main(args) == 0
    size = stack.stat().st_size
    stack.write_bytes(stack.read_bytes()[:500])
    capsys.readouterr()
    assert main(args) == 0
    assert "skipped" not in capsys.readouterr().out
    assert stack.stat().st_size == size
