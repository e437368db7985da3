"""Skip-done: the batch's per-scene record ``OUTPUT/<id>/batch.json``.

Deploy's ``run.json`` fingerprints one deploy of one stack. A batch scene is more: with raw
inputs it also compiles the stack, so whether it is done depends on the raw rasters and the
features settings too. The batch therefore writes its own record beside ``run.json``, atomically
and only after the scene's outputs are committed. A scene is done when its record's fingerprint
matches the one planned now (:func:`glaviz.runs.records.differences` is empty: same weights
sha256, inputs' sizes and modification times, resolved features and deploy configuration and
glaviz version) and its outputs are in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glaviz.runs.atomic import write_json_atomic
from glaviz.runs.records import differences, read_record

RECORD_NAME = "batch.json"
#: Deploy outputs a finished scene must still have for it to be skipped.
REQUIRED_OUTPUTS: tuple[str, ...] = ("outlines.tif", "outlines.gpkg", "run.json")


def record_path(folder: Path) -> Path:
    return Path(folder) / RECORD_NAME


def load_done(folder: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The scene's record if it is done with exactly this fingerprint, else ``None``."""
    record = read_record(record_path(folder))
    if record is None or record.get("status") != "done":
        return None
    if differences(record.get("fingerprint", {}), fingerprint):
        return None
    if not all((Path(folder) / name).is_file() for name in REQUIRED_OUTPUTS):
        return None
    return record


def why_not_done(folder: Path, fingerprint: dict[str, Any]) -> list[str]:
    """Why a scene must be computed, in words (for ``-v`` logs)."""
    record = read_record(record_path(folder))
    if record is None:
        return ["no record"]
    return differences(record.get("fingerprint", {}), fingerprint) or ["outputs missing"]


def write_done(folder: Path, record: dict[str, Any]) -> Path:
    return write_json_atomic(record_path(folder), record, default=str)


def forget(folder: Path) -> None:
    """Drop a scene's record before it is recomputed, so a crash cannot leave it looking done."""
    record_path(folder).unlink(missing_ok=True)
