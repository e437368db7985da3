"""``glaviz fetch-weights``: list, download or import the published GlaViTU weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, state
from glaviz.errors import GlavizError

if TYPE_CHECKING:
    from glaviz.registry.fetch import CacheStatus, FetchResult
    from glaviz.registry.registry import ModelEntry


@app.command("fetch-weights")
def fetch_weights(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Registry model names (e.g. global, hma); see --list.",
            metavar="NAME...",
            show_default=False,
        ),
    ] = None,
    list_models: Annotated[
        bool, typer.Option("--list", help="Show the registry and what is cached (offline).")
    ] = False,
    all_models: Annotated[bool, typer.Option("--all", help="Fetch every registry model.")] = False,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Import this hand-downloaded file as NAME (verified like a download).",
            dir_okay=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="Mirror URL or folder, tried before the Google Drive; the file name is appended. "
            "Default: $GLAVIZ_WEIGHTS_URL.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download or import again even if cached.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout (with each sha256).")
    ] = False,
) -> None:
    """Download published GlaViTU weights into the verified local cache ($GLAVIZ_HOME).

    Sources: a mirror first (--base-url, $GLAVIZ_WEIGHTS_URL), then the authors' public Google
    Drive folder. Downloads resume after interruptions. Each file is verified before it enters the
    cache: the sha256 when pinned ($GLAVIZ_REGISTRY), and always every tensor's shape.

    Example: glaviz fetch-weights global hma
    """
    from glaviz.config.fetch import FetchWeightsConfig, build_config
    from glaviz.registry import fetch, load_registry, weights_dir

    config = build_config(
        FetchWeightsConfig,
        names=tuple(names or ()),
        list_only=list_models,
        all_models=all_models,
        from_file=from_file,
        base_url=base_url,
        force=force,
    )
    if config.list_only:
        rows = fetch.cache_status()
        if config.names:
            wanted = {load_registry().require(n).name for n in config.names}
            rows = [r for r in rows if r.entry.name in wanted]
        if as_json:
            _print_json({"models": [_row_json(r) for r in rows], "cache": str(weights_dir())})
        else:
            _print_table(rows)
        return
    if config.from_file is not None:
        result = fetch.import_model(config.names[0], config.from_file, force=config.force)
        _report([result], as_json=as_json)
        return
    registry = load_registry()
    entries = registry.models if config.all_models else [registry.require(n) for n in config.names]
    failed: list[tuple[str, GlavizError]] = []
    results: list[FetchResult] = []
    for entry in entries:
        try:
            result = fetch.fetch_model(
                entry, base_url=config.base_url, force=config.force, progress=state.show_progress
            )
        except GlavizError as exc:
            if len(entries) == 1:
                raise
            failed.append((entry.name, exc))  # one bad model must not stop a batch
            continue
        results.append(result)
        if not as_json:
            _report([result], as_json=False)
    if as_json:
        _print_json(
            {
                "models": [_result_json(r) for r in results],
                "failed": {name: str(exc) for name, exc in failed},
            }
        )
    if failed:
        first = failed[0][1]
        raise type(first)(
            f"{len(failed)} of {len(entries)} models were not fetched "
            f"({', '.join(name for name, _ in failed)}); first error: {first}"
        )


def _result_json(result: FetchResult) -> dict[str, object]:
    return {
        "name": result.entry.name,
        "file": result.entry.file,
        "status": result.status,
        "path": str(result.path),
        "source": result.source,
        "size": result.size,
        "sha256": result.sha256,
        "sha256_pinned": result.entry.sha256 is not None,
    }


def _row_json(row: CacheStatus) -> dict[str, object]:
    return {
        "name": row.entry.name,
        "file": row.entry.file,
        "features": list(row.entry.features),
        "location": row.entry.location,
        "drive_id": row.entry.drive_id,
        "cached": row.cached,
        "path": str(row.path),
        "size": row.size,
        "sha256": row.sha256,
        "sha256_pinned": row.entry.sha256 is not None,
        "unconfirmed": list(row.entry.unconfirmed),
    }


def _print_json(data: dict[str, object]) -> None:
    import json

    print(json.dumps(data, indent=2))


def _report(results: list[FetchResult], *, as_json: bool) -> None:
    if as_json:
        _print_json({"models": [_result_json(r) for r in results], "failed": {}})
        return
    if state.quiet:
        return
    for result in results:
        words = {
            "downloaded": f"downloaded from {result.source}",
            "imported": f"imported from {result.source}",
            "cached": "already cached",
            "packaged": "built into glaviz",
        }
        size = f"{result.size / 1e6:.1f} MB"
        digest = f", sha256 {result.sha256}" if result.sha256 else ""
        console.print(
            f"{result.entry.name}: {words[result.status]} → {result.path} ({size}{digest})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _print_table(rows: list[CacheStatus]) -> None:
    from rich import box
    from rich.table import Table

    from glaviz.registry import weights_dir

    table = Table(
        title="GlaViTU models (* inferred, not confirmed)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for column in ("name", "alias", "file", "features", "location", "size"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "file"))
    table.add_column("cached")
    table.add_column("sha256", no_wrap=True)
    for row in rows:
        e = row.entry
        location = e.location if e.location_size is None else f"{e.location} ({e.location_size})"
        table.add_row(
            e.name,
            e.aliases[0] if e.aliases else "",
            _mark(e, "file", e.file),
            _mark(e, "features", "+".join(e.features)),
            _mark(e, "location", location),
            f"{row.size / 1e6:.1f} MB" if row.size is not None else "-",
            ("built-in" if row.packaged else "yes") if row.cached else "no",
            row.sha256 or ("" if not row.cached else "unrecorded"),
        )
    out = console
    if not console.is_terminal:
        # Piped output (scripts, logs) is not squeezed into 80 columns: one line per model.
        from rich.console import Console

        out = Console(width=max(console.width, 200), no_color=console.no_color)
    out.print(table)
    out.print(f"cache: {weights_dir()}", markup=False, highlight=False, soft_wrap=True)


def _mark(entry: ModelEntry, field: str, text: str) -> str:
    return text + ("*" if not entry.is_confirmed(field) else "")
