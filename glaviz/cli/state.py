"""Process-wide CLI settings chosen by the global options (``-q``, ``-v``, ``--debug``)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from rich.console import Console


@dataclass
class CliState:
    """What the global options decided; read by commands when they render output."""

    quiet: bool = False
    verbose: int = 0
    debug: bool = False

    @property
    def show_progress(self) -> bool:
        """Progress bars only on an interactive terminal, never in scripts or with ``-q``."""
        return not self.quiet and sys.stderr.isatty()


state = CliState()
console = Console()
err_console = Console(stderr=True)


def prepare_tensorflow() -> None:
    """Import TensorFlow quietly (tracebacks and native logs stay visible with --debug)."""
    from glaviz.tfutil import import_tensorflow

    import_tensorflow(quiet=not state.debug)


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
    if not logger.handlers:
        from rich.logging import RichHandler

        logger.addHandler(RichHandler(console=err_console, show_path=False, show_time=False))
    # TensorFlow's C++ logging is noise for users unless they asked for debug output.
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if state.debug else "3")
