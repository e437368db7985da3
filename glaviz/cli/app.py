"""The Typer application, its global options, and the one place errors become exit codes.

The exit codes are those of :mod:`glaviz.errors` (``exit_code`` on each error class,
:data:`~glaviz.errors.EXIT_MEANINGS` for their words); 128 + N when stopped by signal N.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from glaviz import __version__
from glaviz.cli.state import configure_consoles, configure_logging, err_console, say, state
from glaviz.errors import SIGNAL_EXIT_BASE, GlavizError, exit_codes_help

app = typer.Typer(
    name="glaviz",
    help=(
        "Glacier mapping with GlaViTU (Maslov et al., Nature Communications 2025).\n\n"
        "Global options (-q, -v, --debug, --json) go before or after the command.\n\n"
        f"{exit_codes_help()}\n\n"
        "Example: glaviz deploy stack.tif --weights global"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

#: Options of the ``glaviz`` callback that may also be written after the subcommand.
GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose", "--debug", "--json"})

#: Options a command defines itself under a global option's name (``evaluate --json FILE``).
COMMAND_OWNED: dict[str, frozenset[str]] = {}


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
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object on stdout (outputs, counts, timings, or the error); "
            "human text goes to stderr.",
        ),
    ] = False,
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
    state.json = json_output
    configure_consoles()
    configure_logging()


def _register_commands() -> None:
    # Each module adds its command(s) to ``app``; imports stay light (no TensorFlow here).
    from glaviz.cli import commands  # noqa: F401


def _print_error(message: str) -> None:
    # One line per problem, no rich markup interpretation: messages contain paths with brackets.
    for line in message.splitlines() or [""]:
        say(f"Error: {line}", to=err_console)


def _is_usage_error(exc: Exception) -> bool:
    # Typer vendors click in recent releases, so match click's exceptions by their interface.
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _is_global(arg: str) -> bool:
    return arg in GLOBAL_FLAGS or re.fullmatch(r"-v+", arg) is not None


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options written after the subcommand to before it (``deploy … -q``).

    Global options take no values, so the subcommand is the first argument that is not an
    option. Nothing after ``--`` is touched, nor an option the command defines itself.
    """
    index = next((i for i, a in enumerate(args) if a == "--" or not a.startswith("-")), None)
    if index is None or args[index] == "--":
        return list(args)
    command, rest = args[index], args[index + 1 :]
    owned = COMMAND_OWNED.get(command, frozenset())
    moved, kept = [], []
    for pos, arg in enumerate(rest):
        if arg == "--":
            kept.extend(rest[pos:])
            break
        (moved if _is_global(arg) and arg not in owned else kept).append(arg)
    return [*args[:index], *moved, command, *kept]


def _command_name(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is so every cleanup path runs (as for ^C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_as_exceptions() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM/SIGHUP into :class:`Interrupted` where the program is, so every cleanup
    path runs; yields a list that receives the signal number (Typer reports any
    ``KeyboardInterrupt`` as a bare exit code 130, losing which signal it was).

    The handler fires once; a second signal during cleanup is ignored so the cleanup can finish.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    wanted = [getattr(signal, n) for n in names]
    previous = {s: signal.getsignal(s) for s in wanted}

    def handler(signum: int, _frame: Any) -> None:
        for s in wanted:
            signal.signal(s, signal.SIG_IGN)
        received.append(signum)
        raise Interrupted(signum)

    for s in wanted:
        signal.signal(s, handler)
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every failure to ``Error:`` lines and an exit code.

    Returns the exit code instead of calling ``sys.exit`` so that tests can call it directly.
    With ``--json`` the outcome, success or failure, is also one JSON object on stdout.
    """
    _register_commands()
    args = hoist_global_options(sys.argv[1:] if argv is None else list(argv))
    command = _command_name(args)
    head = args[: args.index(command)] if command else args
    debug = "--debug" in head
    as_json = "--json" in head
    state.json = as_json  # known before parsing, so even a usage error is reported as JSON
    configure_consoles()
    code, error = 0, None
    result: Any = None
    received: list[int] = []
    try:
        with _signals_as_exceptions() as received:
            result = app(args=args, prog_name="glaviz", standalone_mode=False)
        if received:
            raise Interrupted(received[0])
        if isinstance(result, int):  # click returns the code of typer.Exit in this mode
            code = result
    except GlavizError as exc:
        if debug:
            traceback.print_exc()
        code, error = exc.exit_code, exc
    except typer.Exit as exc:
        code = exc.exit_code
    except (KeyboardInterrupt, typer.Abort) as exc:
        signum = received[0] if received else getattr(exc, "signum", signal.SIGINT)
        code, error = SIGNAL_EXIT_BASE + signum, Interrupted(signum)
    except Exception as exc:  # the one top-level handler
        if _is_usage_error(exc):  # bad options, missing arguments: click formats these itself
            exc.show()  # type: ignore[attr-defined]
            code, error = int(exc.exit_code), exc  # type: ignore[attr-defined]
        else:
            if debug:
                traceback.print_exc()
            code, error = 1, exc

    if error is not None:
        message = _error_message(error)
        if not _is_usage_error(error):
            _print_error(message)
        if as_json:
            _emit_json(
                {
                    "command": command,
                    "status": "error",
                    "exit_code": code,
                    "error": {
                        "type": type(error).__name__,
                        "message": message,
                        "lines": message.splitlines(),
                    },
                    **(getattr(error, "payload", None) or {}),
                }
            )
    elif as_json and (result is None or isinstance(result, dict)):  # not --help or --version
        _emit_json({"command": command, "status": "done", "exit_code": code, **(result or {})})
    return code


def _error_message(error: BaseException) -> str:
    if isinstance(error, GlavizError):
        return str(error)
    if isinstance(error, Interrupted):
        name = signal.Signals(error.signum).name
        return f"stopped by {name}; no partial outputs were left behind"
    if _is_usage_error(error):
        return str(getattr(error, "message", None) or error)
    return f"unexpected {type(error).__name__}: {error} (rerun with --debug for a traceback)"


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
