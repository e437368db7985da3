"""``glaviz fetch-dataset``: the published datasets from the NIRD research data archive."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from glaviz.cli.from_config import config_command
from glaviz.cli.state import console, say, state
from glaviz.config.fetch import FetchDatasetConfig

if TYPE_CHECKING:
    from glaviz.registry.fetch_dataset import DatasetResult, FileStatus


@config_command(
    "fetch-dataset",
    FetchDatasetConfig,
    arguments={"name": "NAME"},
    options={"list_only": ["--list"]},
    check_outputs=False,
)
def fetch_dataset(config: FetchDatasetConfig) -> dict[str, Any]:
    """Download published datasets (doi:10.11582/2024.00168, CC-BY-4.0) into a folder.

    NAME is benchmark (the 20230905 files), demo (the gsgm DEMO files) or independent (four test
    areas: features pickle + reference raster). --split (benchmark, demo) and --area
    (independent) are repeatable. Downloads resume (HTTP range requests, also after an
    interrupted run), are md5-verified against the archive's table of contents and appear under
    their names only when complete. The free space is checked before the first byte.

    Example: glaviz fetch-dataset independent --area swiss_alps --to data/

    Example: glaviz fetch-dataset --list
    """
    from glaviz.registry import archive
    from glaviz.registry import fetch_dataset as engine

    files = archive.select(config.name, splits=tuple(config.split), areas=tuple(config.area))
    if config.list_only:
        rows = engine.status(files, config.to)
        if not state.json:
            _print_table(rows, config.to)
        return {"files": [_status_json(r) for r in rows], "folder": str(config.to)}
    results = engine.fetch_files(
        files,
        to=config.to,
        mirror=config.base_url,
        force=config.force,
        progress=state.show_progress,
    )
    if not state.quiet:
        for r in results:
            how = f"downloaded from {r.source}, md5 verified" if r.source else "already there"
            say(f"{r.file.name}: {how} → {r.path} ({r.file.size / 1e9:.2f} GB)")
    return {"outputs": [str(r.path) for r in results], "files": [_result_json(r) for r in results]}


def _file_json(row: FileStatus | DatasetResult) -> dict[str, object]:
    f = row.file
    return {
        "name": f.name,
        "dataset": f.dataset,
        "split": f.split,
        "area": f.area,
        "kind": f.kind,
        "bytes": f.size,
        "md5": f.md5,
        "path": str(row.path),
    }


def _status_json(row: FileStatus) -> dict[str, object]:
    return {**_file_json(row), "present": row.present, "partial_bytes": row.partial_bytes}


def _result_json(row: DatasetResult) -> dict[str, object]:
    return {**_file_json(row), "status": row.status, "source": row.source}


def _print_table(rows: list[FileStatus], folder: Path) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from glaviz.registry.archive import load_archive

    record = load_archive()
    table = Table(
        title=f"doi:{record.doi} ({record.license}, version {record.version})",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for column in ("dataset", "split/area", "file", "bytes", "size", "md5", "here"):
        justify = "right" if column in ("bytes", "size") else "left"
        table.add_column(column, justify=justify, no_wrap=True)
    for row in rows:
        f = row.file
        here = (
            "yes" if row.present else (f"part {row.partial_bytes:,}" if row.partial_bytes else "no")
        )
        table.add_row(f.dataset, f.part, f.name, f"{f.size:,}", _human(f.size), f.md5, here)
    total = sum(r.file.size for r in rows)
    out = console
    if not console.is_terminal:
        # Piped output (scripts, logs) is not squeezed into 80 columns: one line per file.
        out = Console(width=max(console.width, 160), no_color=console.no_color)
    out.print(table)
    say(
        f"{len(rows)} files, {total:,} bytes ({total / 1e9:.1f} GB); folder: {folder}; "
        f"source: {record.base_url}",
        to=out,
    )


def _human(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
