"""``glaviz fetch-weights``: list, download or import the published GlaViTU weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from glaviz.cli.app import app
from glaviz.cli.state import console, state
from glaviz.errors import ConfigError, GlavizError

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
            help="Mirror URL or folder; the file name is appended. Default: $GLAVIZ_WEIGHTS_URL.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download or import again even if cached.")
    ] = False,
) -> None:
    """Download published GlaViTU weights into the verified local cache ($GLAVIZ_HOME).

    Downloads resume after interruptions. Each file is verified before it enters the cache.

    Verification: the sha256 when pinned, and always every tensor's shape.

    Example: glaviz fetch-weights global --base-url https://mirror.example.org/glaviz/
    """
    from glaviz.registry import fetch

    names = names or []
    if list_models:
        if all_models or from_file is not None or force:
            raise ConfigError("--list cannot be combined with --all, --from or --force")
        _print_table(fetch.cache_status(), only=names)
        return
    if all_models and names:
        raise ConfigError("give model names or --all, not both")
    if from_file is not None:
        if base_url is not None:
            raise ConfigError("--from imports a local file; it cannot be combined with --base-url")
        if all_models or len(names) != 1:
            raise ConfigError(
                "--from imports one file: give exactly one model name, e.g. "
                "glaviz fetch-weights global --from glavitu_global_weights.h5"
            )
        _report(fetch.import_model(names[0], from_file, force=force))
        return
    if not names and not all_models:
        raise ConfigError(
            "name the model(s) to fetch (e.g. glaviz fetch-weights global), "
            "or use --all, or --list to see them"
        )
    from glaviz.registry import load_registry

    entries = load_registry().models if all_models else [load_registry().require(n) for n in names]
    failed: list[tuple[str, GlavizError]] = []
    for entry in entries:
        try:
            result = fetch.fetch_model(
                entry, base_url=base_url, force=force, progress=state.show_progress
            )
        except GlavizError as exc:
            if len(entries) == 1:
                raise
            failed.append((entry.name, exc))  # one bad model must not stop a batch
            continue
        _report(result)
    if failed:
        first = failed[0][1]
        raise type(first)(
            f"{len(failed)} of {len(entries)} models were not fetched "
            f"({', '.join(name for name, _ in failed)}); first error: {first}"
        )


def _report(result: FetchResult) -> None:
    if state.quiet:
        return
    words = {
        "downloaded": f"downloaded from {result.source}",
        "imported": f"imported from {result.source}",
        "cached": "already cached",
        "packaged": "built into glaviz",
    }
    size = f"{result.size / 1e6:.1f} MB"
    console.print(
        f"{result.entry.name}: {words[result.status]} → {result.path} ({size})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _print_table(rows: list[CacheStatus], *, only: list[str]) -> None:
    from rich import box
    from rich.table import Table

    from glaviz.registry import load_registry, weights_dir

    if only:
        wanted = {load_registry().require(n).name for n in only}
        rows = [r for r in rows if r.entry.name in wanted]
    table = Table(
        title="GlaViTU models (* inferred, not confirmed)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for column in ("name", "alias", "file", "features", "location", "size"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "file"))
    table.add_column("cached")
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
        )
    out = console
    if not console.is_terminal:
        # Piped output (scripts, logs) is not squeezed into 80 columns: one line per model.
        from rich.console import Console

        out = Console(width=max(console.width, 132), no_color=console.no_color)
    out.print(table)
    out.print(f"cache: {weights_dir()}", markup=False, highlight=False, soft_wrap=True)


def _mark(entry: ModelEntry, field: str, text: str) -> str:
    return text + ("*" if not entry.is_confirmed(field) else "")
