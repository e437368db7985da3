"""The inventory GeoPackage and its run record, written atomically.

Layers: ``glaciers`` (polygons with attributes), ``hypsometry`` (a table: one row per glacier and
elevation band), ``divides`` (lines between adjacent glaciers) and ``vanished`` (reference
glaciers with no ice left). The GeoPackage is built under a hidden temporary name beside the
target and renamed only when every layer is written; the run record (``<output stem>.run.json``)
is renamed last, so a file that has its record is complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glaviz.config.base import sidecar_record
from glaviz.runs.atomic import atomic_path
from glaviz.runs.records import write_record


def record_path(output: Path) -> Path:
    """Where the run record of ``output`` goes: ``glaciers.gpkg`` → ``glaciers.gpkg.run.json``,
    beside it as for every single-file output (``--skip-existing`` reads it there)."""
    return sidecar_record(output)


def write_inventory(
    output: Path,
    *,
    layers: dict[str, Any],
    record: dict[str, Any],
) -> list[Path]:
    """Write every layer into one GeoPackage, then the run record; all or nothing."""
    import pyogrio

    output = Path(output)
    # Both files are complete under temporary names before either is renamed: a failure
    # anywhere leaves neither; the record is renamed last.
    with (
        atomic_path(record_path(output), suffix=".json") as record_tmp,
        atomic_path(output, suffix=".gpkg") as tmp,
    ):
        tmp.unlink()  # GDAL creates the GeoPackage itself
        for name, frame in layers.items():
            if "geometry" in getattr(frame, "columns", []) and hasattr(frame, "crs"):
                frame.to_file(tmp, layer=name, driver="GPKG", engine="pyogrio")
            else:
                pyogrio.write_dataframe(frame, tmp, layer=name, driver="GPKG")
        write_record(record_tmp, record, atomic=False, outputs={output.name: tmp})
    return [output, record_path(output)]
