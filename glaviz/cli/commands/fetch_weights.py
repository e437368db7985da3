"""``glaviz fetch-weights``: list, download or import the published GlaViTU weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from glaviz.cli.modelcmd import model_command
from glaviz.cli.state import console, state
from glaviz.config import FetchWeightsConfig
from glaviz.errors import GlavizError

if TYPE_CHECKING:
    from glaviz.registry.fetch import CacheStatus, FetchResult
    from glaviz.registry.registry import ModelEntry


@model_command(
    "fetch-weights",
    FetchWeightsConfig,
    arguments={"names": "NAME..."},
    options={"list_only": ["--list"], "all_models": ["--all"], "from_file": ["--from"]},
    check_outputs=False,
)
def fetch_weights(config: FetchWeightsConfig) -> dict[str, Any]:
    """Download published GlaViTU weights into the verified local cache ($GLAVIZ_HOME).

    Downloads resume after interruptions. Each file is verified before it enters the cache.

    Verification: the sha256 when pinned, and always every tensor's shape. A model already in
    the cache is not fetched again (exit 0), unless --force.

    Example: glaviz fetch-weights global --base-url https://mirror.example.org/glaviz/
    """
    from glaviz.registry import fetch

    names, base_url, force = config.names, config.base_url, config.force
    if config.list_only:
        _print_table(fetch.cache_status(), only=list(names))
        return {}
    if config.from_file is not None:
        result = fetch.import_model(names[0], config.from_file, force=force)
        _report(result)
        return {"outputs": [str(result.path)], "models": {result.entry.name: result.status}}
    from glaviz.registry import load_registry

    registry = load_registry()
    entries = registry.models if config.all_models else [registry.require(n) for n in names]
    failed: list[tuple[str, GlavizError]] = []
    done: dict[str, str] = {}
    outputs: list[str] = []
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
        done[entry.name] = result.status
        outputs.append(str(result.path))
        _report(result)
    if failed:
        first = failed[0][1]
        raise type(first)(
            f"{len(failed)} of {len(entries)} models were not fetched "
            f"({', '.join(name for name, _ in failed)}); first error: {first}"
        )
    return {"outputs": outputs, "models": done}


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
