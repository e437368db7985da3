"""Process-wide CLI settings chosen by the global options (``-q``, ``-v``, ``--debug``, ``--json``).

Human text goes to ``console`` (stdout) and ``err_console`` (stderr). With ``--json`` stdout is
reserved for the one JSON object, so ``console`` writes to stderr too. Neither wraps lines when it
is not writing to a terminal: scripts that grep a summary line must find it on one line.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from rich.console import Console

#: Console width when not on a terminal: wide enough that tables and summaries are never wrapped.
PIPE_WIDTH = 10_000


@dataclass
class CliState:
    """What the global options decided; read by commands when they render output."""

    quiet: bool = False
    verbose: int = 0
    debug: bool = False
    json: bool = False

    @property
    def show_progress(self) -> bool:
        """Progress bars only on an interactive terminal, never in scripts or with ``-q``."""
        return not self.quiet and sys.stderr.isatty()


state = CliState()
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def say(text: str, *, to: Console | None = None) -> None:
    """Print ``text`` as it is on ``to`` (default :data:`console`): no rich markup or highlighting,
    because messages carry paths with brackets and scripts read these lines verbatim."""
    (to or console).print(text, markup=False, highlight=False, soft_wrap=True)


def configure_consoles() -> None:
    """Point ``console`` at stderr under ``--json``; never wrap when not on a terminal."""
    console.stderr = state.json
    for con in (console, err_console):
        con.width = None  # type: ignore[assignment]  # re-detect: the stream may have changed
        if not con.is_terminal:
            con.width = PIPE_WIDTH


class _StderrHandler(logging.Handler):
    """Plain log lines on whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def prepare_tensorflow() -> None:
    """Have TensorFlow start quietly (its native logs stay visible with --debug).

    The import itself is the engine's: it starts TensorFlow after the checks that need none, so
    a typo is reported before TensorFlow's start-up is paid.
    """
    from glaviz.util import tf

    tf.QUIET = not state.debug


def configure_logging() -> None:
    """Send glaviz's log records to stderr at the level the global options ask for."""
    if state.debug or state.verbose >= 2:
        level = logging.DEBUG
    elif state.verbose == 1:
        level = logging.INFO
    elif state.quiet:
        level = logging.ERROR
    else:
        level = logging.WARNING
    logger = logging.getLogger("glaviz")
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if getattr(h, "_glaviz", False)]:
        logger.removeHandler(handler)
    handler: logging.Handler
    if err_console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=err_console, show_path=False, show_time=False)
    else:
        # rich pads log lines to the console width; a pipe gets plain, unwrapped lines.
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler._glaviz = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    # TensorFlow's C++ logging is noise for users unless they asked for debug output.
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if state.debug else "3")
