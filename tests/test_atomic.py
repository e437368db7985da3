"""Atomic outputs: renamed only on success, nothing left on failure, normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from glaviz.runs.atomic import atomic_path, write_json_atomic


def test_success_renames_with_umask_permissions(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "sub" / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_failure_leaves_nothing_and_keeps_old_file(tmp_path) -> None:
    target = tmp_path / "x.bin"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
