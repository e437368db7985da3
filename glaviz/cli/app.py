"""The Typer application, its global options, and the one place errors become exit codes."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from glaviz import __version__
from glaviz.cli.state import configure_logging, err_console, state
from glaviz.errors import GlavizError

app = typer.Typer(
    name="glaviz",
    help=(
        "Glacier mapping with GlaViTU (Maslov et al., Nature Communications 2025).\n\n"
        "Example: glaviz deploy stack.tif --weights global -o out/"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"glaviz {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors.")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
    ] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """Glacier mapping with GlaViTU."""
    state.quiet, state.verbose, state.debug = quiet, verbose, debug
    configure_logging()


def _register_commands() -> None:
    # Each module adds its command(s) to ``app``; imports stay light (no TensorFlow here).
    from glaviz.cli import commands  # noqa: F401


def _print_error(message: str) -> None:
    # One line, no rich markup interpretation: messages contain paths with brackets.
    err_console.print(f"Error: {message}", markup=False, highlight=False, soft_wrap=True)


def _is_usage_error(exc: Exception) -> bool:
    # Typer vendors click in recent releases, so match click's exceptions by their interface.
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every failure to one ``Error:`` line and an exit code.

    Returns the exit code instead of calling ``sys.exit`` so that tests can call it directly.
    """
    _register_commands()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="glaviz", standalone_mode=False)
    except GlavizError as exc:
        if debug:
            traceback.print_exc()
        _print_error(str(exc))
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        _print_error("aborted")
        return 130
    except KeyboardInterrupt:
        _print_error("interrupted; no finished outputs were written")
        return 130
    except Exception as exc:  # the one top-level handler
        if _is_usage_error(exc):  # bad options, missing arguments: click formats these itself
            exc.show()  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if debug:
            traceback.print_exc()
        _print_error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for a traceback)")
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
