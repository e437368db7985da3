"""``glaviz fetch-weights``: list, download or import the published GlaViTU weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from glaviz.cli.from_config import config_command
from glaviz.cli.state import console, say, state
from glaviz.config import FetchWeightsConfig
from glaviz.errors import GlavizError

if TYPE_CHECKING:
    from rich.table import Table

    from glaviz.registry.catalogue import ModelEntry
    from glaviz.registry.fetch import CacheStatus, FetchResult


@config_command(
    "fetch-weights",
    FetchWeightsConfig,
    arguments={"names": "NAME..."},
    options={"list_only": ["--list"], "all_models": ["--all"], "from_file": ["--from"]},
    check_outputs=False,
)
def fetch_weights(config: FetchWeightsConfig) -> dict[str, Any]:
    """Download published GlaViTU weights into the verified local cache ($GLAVIZ_HOME).

    Sources: a mirror first (--base-url, $GLAVIZ_WEIGHTS_URL), then the authors' public Google
    Drive folder. Downloads resume after interruptions. Each file is verified before it enters the
    cache: its sha256 (--sha256, else the registry's pin, else the one recorded when the model was
    first installed here), and always the architecture and every tensor's shape. A model
    installed without a pin gets a warning naming the recorded sha256. A model already in the
    cache is not fetched again (exit 0), unless --force. --list and --json show each sha256.

    Example: glaviz fetch-weights global hma

    Example: glaviz fetch-weights global --force --sha256 HEX

    Example: glaviz fetch-weights global --base-url https://mirror.example.org/glaviz/
    """
    from glaviz.registry import fetch, weights_dir

    names, base_url, force, sha256 = config.names, config.base_url, config.force, config.sha256
    if config.list_only:
        rows = _selected(fetch.cache_status(), only=list(names))
        if not state.json:
            _print_table(rows)
        return {"models": [_row_json(r) for r in rows], "cache": str(weights_dir())}
    if config.from_file is not None:
        result = fetch.import_model(names[0], config.from_file, force=force, sha256=sha256)
        _report(result)
        return {"outputs": [str(result.path)], "models": [_result_json(result)]}
    from glaviz.registry import load_registry

    registry = load_registry()
    entries = registry.models if config.all_models else [registry.require(n) for n in names]
    failed: list[tuple[str, GlavizError]] = []
    results: list[FetchResult] = []
    for entry in entries:
        try:
            result = fetch.fetch_model(
                entry,
                base_url=base_url,
                force=force,
                progress=state.show_progress,
                sha256=sha256,
            )
        except GlavizError as exc:
            if len(entries) == 1:
                raise
            failed.append((entry.name, exc))  # one bad model must not stop a batch
            continue
        results.append(result)
        _report(result)
    if failed:
        first = failed[0][1]
        raise type(first)(
            f"{len(failed)} of {len(entries)} models were not fetched "
            f"({', '.join(name for name, _ in failed)}); first error: {first}"
        )
    return {
        "outputs": [str(r.path) for r in results],
        "models": [_result_json(r) for r in results],
        "failed": {},
    }


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
        "changed": row.changed,
        "sha256": row.sha256,
        "sha256_pinned": row.entry.sha256 is not None,
        "sha256_trust": row.trust,
        "unconfirmed": list(row.entry.unconfirmed),
    }


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
    digest = f", sha256 {result.sha256}" if result.sha256 else ""
    say(f"{result.entry.name}: {words[result.status]} → {result.path} ({size}{digest})")


def _selected(rows: list[CacheStatus], *, only: list[str]) -> list[CacheStatus]:
    from glaviz.registry import load_registry

    if not only:
        return rows
    wanted = {load_registry().require(n).name for n in only}
    return [r for r in rows if r.entry.name in wanted]


def _print_table(rows: list[CacheStatus]) -> None:
    """The registry as a table: every column in a pipe, the essentials on a narrow terminal.

    A pipe gets one line per model with full sha256 digests (scripts grep them). A terminal gets
    digests cut to 12 hex digits (``--json`` has them whole); if the table is still wider than
    the terminal, the alias, file and size columns are left out rather than letting rich squeeze
    the name column away (it did, at 80 columns): the name is what the other commands take.
    """
    from rich.console import Console
    from rich.measure import Measurement

    from glaviz.registry import weights_dir

    out = console
    if not console.is_terminal:
        # Piped output (scripts, logs) is not squeezed into 80 columns: one line per model.
        out = Console(width=max(console.width, 200), no_color=console.no_color)
        table = _table(rows, compact=False, short=False)
    else:
        table = _table(rows, compact=False, short=True)
        wide = out.options.update_width(1 << 16)
        if Measurement.get(out, wide, table).maximum > out.width:
            table = _table(rows, compact=True, short=True)
            table.caption = "alias, file and size left out at this width: see --json"
            table.caption_justify = "left"
    out.print(table)
    say(f"cache: {weights_dir()}", to=out)


def _table(rows: list[CacheStatus], *, compact: bool, short: bool) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(
        # At most 80 characters: the CLI's console does not wrap (soft_wrap), a terminal would.
        title="GlaViTU models (* inferred, not confirmed; for a sha256: recorded, not pinned)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    longest = max((len(r.entry.name) for r in rows), default=4)
    table.add_column("name", no_wrap=True, min_width=longest)
    columns = ("features", "location") if compact else ("alias", "file", "features", "location")
    for column in columns:
        if compact and column == "location":
            table.add_column(column, no_wrap=True)  # "region (12)" stays on one line
        elif compact and column == "features":
            table.add_column(column, overflow="fold", ratio=1)  # takes what the rest leaves
        else:
            table.add_column(column, overflow="fold", no_wrap=column == "file")
    if not compact:
        table.add_column("size", no_wrap=True, justify="right")
    table.add_column("cached", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    for row in rows:
        e = row.entry
        location = e.location if e.location_size is None else f"{e.location} ({e.location_size})"
        cells = {
            "alias": e.aliases[0] if e.aliases else "",
            "file": _mark(e, "file", e.file),
            "features": _mark(e, "features", "+".join(e.features)),
            "location": _mark(e, "location", location),
        }
        size = [] if compact else [f"{row.size / 1e6:.1f} MB" if row.size is not None else "-"]
        table.add_row(
            e.name,
            *(cells[c] for c in columns),
            *size,
            _cached_word(row),
            _digest_cell(row, short=short),
        )
    return table


def _cached_word(row: CacheStatus) -> str:
    if not row.cached:
        return "no"
    if row.changed:
        return "changed"  # its size is not the pinned or recorded one: the next fetch refuses it
    return "built-in" if row.packaged else "yes"


def _digest_cell(row: CacheStatus, *, short: bool) -> str:
    """The sha256 a fetch checks against: pinned, or (marked *) recorded at the first install."""
    if row.sha256 is None:
        return "unrecorded" if row.cached else ""
    digest = row.sha256[:12] + "…" if short else row.sha256
    return digest if row.trust == "registry" else digest + "*"


def _mark(entry: ModelEntry, field: str, text: str) -> str:
    return text + ("*" if not entry.is_confirmed(field) else "")
