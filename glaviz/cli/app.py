"""The Typer application, its global options, and the one place errors become exit codes.

The exit codes are those of :mod:`glaviz.errors` (``exit_code`` on each error class,
:data:`~glaviz.errors.EXIT_MEANINGS` for their words); 128 + N when stopped by signal N.

Help is click's plain text, not Typer's rich panels: rich cut option names to fit its columns at
80 characters and in pipes (``--sliver-compact…``), read ``[deploy]`` in help text as markup and
dropped it, and showed ``<bool>`` beside flags. Plain help is the same on a terminal and in a
pipe, never shortens a name and prints help text exactly as written.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import json
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from glaviz import __version__
from glaviz.cli.state import configure_consoles, configure_logging, err_console, say, state
from glaviz.errors import SIGNAL_EXIT_BASE, GlavizError, exit_codes_help

#: The click context and help formatter Typer's commands use (Typer vendors click in recent
#: releases and uses the click package in older ones, so they are taken from Typer itself).
_BaseContext: Any = TyperCommand.context_class
_BaseFormatter: Any = _BaseContext.formatter_class

#: U+2011 NON-BREAKING HYPHEN: holds the place of ``-`` while help text is wrapped.
_HELD_HYPHEN = "\u2011"


def _hold(text: str) -> str:
    return text.replace("-", _HELD_HYPHEN)


class HelpFormatter(_BaseFormatter):
    """click's help formatter, except that a line never breaks inside a word at a hyphen.

    click wraps with :mod:`textwrap`, which splits ``--reference-id`` after ``--reference-`` at
    some widths. Hyphens are held as U+2011 (which textwrap does not break at, and which is as
    wide) while text is laid out, and turned back into ``-`` when the help is read out.
    """

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, _hold(args), prefix)

    def write_text(self, text: str) -> None:
        super().write_text(_hold(text))

    def write_dl(
        self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        super().write_dl([(_hold(a), _hold(b)) for a, b in rows], col_max, col_spacing)

    def getvalue(self) -> str:
        return str(super().getvalue()).replace(_HELD_HYPHEN, "-")


class _HelpContext(_BaseContext):
    formatter_class = HelpFormatter


class HelpCommand(TyperCommand):
    """Every glaviz command: Typer's command, with its help laid out by :class:`HelpFormatter`."""

    context_class = _HelpContext


class HelpGroup(TyperGroup):
    """The ``glaviz`` group: :class:`HelpFormatter`, and each command's whole first sentence.

    click cuts a command's summary to fit one line (``Fit a confidence calibration with the
    published...``); here it wraps instead, so the list of commands says what each one does.
    """

    context_class = _HelpContext

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            summary = command.short_help or inspect.cleandoc(command.help or "").split("\n\n")[0]
            rows.append((name, " ".join(summary.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class GlavizTyper(typer.Typer):
    """Typer whose commands are :class:`HelpCommand` unless a command names its own class, so
    that every module's ``@app.command`` gets glaviz's help layout without saying so."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["cls"] = kwargs.get("cls") or HelpCommand
        return super().command(*args, **kwargs)


app = GlavizTyper(
    name="glaviz",
    help=(
        "Glacier mapping with GlaViTU (Maslov et al., Nature Communications 2025).\n\n"
        "Global options (-q, -v, --debug, --json) go before or after the command.\n\n"
        f"{exit_codes_help()}\n\n"
        "Example: glaviz deploy stack.tif --weights global"
    ),
    cls=HelpGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: see the module docstring
)

#: Options of the ``glaviz`` callback that may also be written after the subcommand.
GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose", "--debug", "--json"})

#: Options a command defines itself under a global option's name (none today; see RENAMED).
COMMAND_OWNED: dict[str, frozenset[str]] = {}

#: Old spellings of a command's file options, by command: old → new. ``evaluate
#: --json FILE`` was evaluate's own option under the global flag's name; it is ``--scores FILE``
#: now, and ``--json`` followed by a value (not an option) after ``evaluate`` still means it, with
#: a warning. ``--json`` alone, anywhere, is the global flag.
RENAMED: dict[str, dict[str, str]] = {}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"glaviz {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors.")] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="More log output (-vv for debug).",
        ),
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


def _is_usage_error(exc: BaseException) -> bool:
    # Typer vendors click in recent releases, so match click's exceptions by their interface.
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _is_help_for_no_args(exc: BaseException) -> bool:
    # click >= 8.2 raises this (a usage error whose message is the help) for a bare ``glaviz``.
    return type(exc).__name__ == "NoArgsIsHelpError"


def _is_global(arg: str) -> bool:
    return arg in GLOBAL_FLAGS or re.fullmatch(r"-v+", arg) is not None


def _is_value(arg: str) -> bool:
    """A value rather than an option: ``scores.json``, or ``-`` (stdout)."""
    return arg == "-" or not arg.startswith("-")


def _old_spelling_with_value(renamed: dict[str, str], args: list[str], pos: int) -> bool:
    return args[pos] in renamed and pos + 1 < len(args) and _is_value(args[pos + 1])


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options written after the subcommand to before it (``deploy … -q``).

    Global options take no values, so the subcommand is the first argument that is not an
    option. Nothing after ``--`` is touched, nor an option the command defines itself, nor the
    old spelling of a renamed option with its value (``evaluate … --json FILE``, see RENAMED).
    """
    _register_commands()  # the commands declare what they own and what they renamed
    index = next((i for i, a in enumerate(args) if a == "--" or not a.startswith("-")), None)
    if index is None or args[index] == "--":
        return list(args)
    command, rest = args[index], args[index + 1 :]
    owned = COMMAND_OWNED.get(command, frozenset())
    renamed = RENAMED.get(command, {})
    moved, kept = [], []
    pos = 0
    while pos < len(rest):
        arg = rest[pos]
        if arg == "--":
            kept.extend(rest[pos:])
            break
        if _old_spelling_with_value(renamed, rest, pos):
            kept.extend(rest[pos : pos + 2])
            pos += 2
            continue
        (moved if _is_global(arg) and arg not in owned else kept).append(arg)
        pos += 1
    return [*args[:index], *moved, command, *kept]


def rename_old_spellings(args: list[str]) -> tuple[list[str], list[str]]:
    """Replace the old spelling of a renamed option (``evaluate … --json FILE``) by its new name.

    Runs after :func:`hoist_global_options`, so an old spelling left after the command is one
    followed by a value. Returns the arguments and one deprecation message per old spelling used.
    """
    command = _command_name(args)
    renamed = RENAMED.get(command or "", {})
    if not renamed:
        return list(args), []
    index = args.index(command)  # type: ignore[arg-type]
    out, used = list(args[: index + 1]), []
    rest = args[index + 1 :]
    for pos, arg in enumerate(rest):
        if arg == "--":
            out.extend(rest[pos:])
            break
        old, sep, value = arg.partition("=")
        if old in renamed and (sep or _old_spelling_with_value(renamed, rest, pos)):
            out.append(f"{renamed[old]}{sep}{value}")
            if old not in used:
                used.append(old)
        else:
            out.append(arg)
    messages = [
        f"{command} {old} FILE is deprecated and will be removed: use {command} "
        f"{renamed[old]} FILE ({old} alone is the global option)"
        for old in used
    ]
    return out, messages


def _command_name(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is so every cleanup path runs (as for ^C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_as_exceptions() -> Iterator[list[Interrupted]]:
    """Turn SIGINT/SIGTERM/SIGHUP into :class:`Interrupted` where the program is, so every cleanup
    path runs; yields a list that receives the exception raised (Typer reports any
    ``KeyboardInterrupt`` as a bare exit code 130, losing which signal it was and the notes that
    cleanup code added to it, such as "the partial download is kept").

    The handler fires once; a second signal during cleanup is ignored so the cleanup can finish.
    """
    received: list[Interrupted] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    wanted = [getattr(signal, n) for n in names]
    previous = {s: signal.getsignal(s) for s in wanted}

    def handler(signum: int, _frame: Any) -> None:
        for s in wanted:
            signal.signal(s, signal.SIG_IGN)
        received.append(Interrupted(signum))
        raise received[-1]

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
    args, deprecations = rename_old_spellings(args)
    command = _command_name(args)
    head = args[: args.index(command)] if command else args
    debug = "--debug" in head
    as_json = "--json" in head
    state.json = as_json  # known before parsing, so even a usage error is reported as JSON
    configure_consoles()
    if not {"-q", "--quiet"} & set(head):
        for message in deprecations:
            say(f"Warning: {message}", to=err_console)
    code, error = 0, None
    result: Any = None
    received: list[Interrupted] = []
    try:
        with _signals_as_exceptions() as received:
            result = app(args=args, prog_name="glaviz", standalone_mode=False)
        if received:
            raise received[0]
        if isinstance(result, int):  # click returns the code of typer.Exit in this mode
            code = result
    except GlavizError as exc:
        if debug:
            traceback.print_exc()
        code, error = exc.exit_code, exc
    except typer.Exit as exc:
        code = exc.exit_code
    except (KeyboardInterrupt, typer.Abort) as exc:
        error = received[0] if received else Interrupted(getattr(exc, "signum", signal.SIGINT))
        if error is not exc:
            for note in getattr(exc, "__notes__", []):
                error.add_note(note)
        code = SIGNAL_EXIT_BASE + error.signum
    except Exception as exc:  # the one top-level handler
        if _is_help_for_no_args(exc):  # a bare ``glaviz``: the help, as before any command
            typer.echo(exc.format_message())  # type: ignore[attr-defined]
            code = int(exc.exit_code)  # type: ignore[attr-defined]
        elif _is_usage_error(exc):  # bad options, missing arguments: one line, as every error
            code, error = int(exc.exit_code), exc  # type: ignore[attr-defined]
        else:
            if debug:
                traceback.print_exc()
            code, error = 1, exc
    if received and error is not received[0]:
        # A library caught the signal's exception and raised its own instead (TensorFlow turns
        # it into a TypeError in places): the run still stopped because of the signal.
        error, code = received[0], SIGNAL_EXIT_BASE + received[0].signum

    if error is not None:
        message = _error_message(error, command)
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


def _error_message(error: BaseException, command: str | None = None) -> str:
    if isinstance(error, GlavizError):
        return str(error)
    if isinstance(error, Interrupted):
        name = signal.Signals(error.signum).name
        # Cleanup code may say what it kept on purpose (a resumable download) as a note.
        kept = getattr(error, "__notes__", None) or ["no partial outputs were left behind"]
        return f"stopped by {name}; " + "; ".join(kept)
    if _is_usage_error(error):
        return _usage_message(error, command)
    return f"unexpected {type(error).__name__}: {error} (rerun with --debug for a traceback)"


def _usage_message(error: BaseException, command: str | None) -> str:
    """click's problem on one line, and where to read how the command is used.

    click itself prints three lines (usage, "Try … for help.", the problem); a script reading
    stderr, and the rule that every error is one ``Error:`` line, want the problem and the hint.
    """
    format_message = getattr(error, "format_message", None)
    problem = format_message() if callable(format_message) else str(error)
    problem = " ".join(str(problem).split()).rstrip(".")
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        path = ctx.command_path
    elif command in {c.name for c in app.registered_commands}:
        path = f"glaviz {command}"
    else:
        path = "glaviz"
    return f"{problem} (see {path} --help)"


def run() -> None:
    """Console-script entry point."""
    code = main()
    if code > SIGNAL_EXIT_BASE and "tensorflow" in sys.modules:
        _leave_after_signal(code)
    sys.exit(code)


def _leave_after_signal(code: int) -> NoReturn:
    """Exit with ``code`` without the interpreter's final teardown.

    A signal can stop TensorFlow in the middle of a call. Tearing down its threads and function
    caches afterwards then sometimes raises (a ``KeyError`` printed after glaviz's ``Error:``
    line) or crashes (SIGSEGV, so a script sees 139 instead of 143), about once in 35 runs —
    after glaviz has already cleaned up. What must still happen at exit is registered with
    ``atexit`` (the private temp folder goes there), so run those handlers, flush, and leave.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
