"""glaviz's one error tree.

Every failure a user can cause or meet is raised as a :class:`GlavizError` subclass. The CLI
catches this root once (``glaviz.cli.app.main``) and prints a single ``Error: …`` line, so engine
code never formats output or chooses exit codes itself. Builtin mixins (``ValueError``,
``OSError``) let library users keep catching what they would naturally expect.
"""

from __future__ import annotations


class GlavizError(Exception):
    """Root of all errors glaviz raises on purpose.

    ``exit_code`` is the process exit status the CLI uses: 1 for data or runtime problems.
    """

    exit_code: int = 1
    #: Extra fields for the ``--json`` error object (e.g. a batch's per-scene results).
    payload: dict[str, object] | None = None


class ConfigError(GlavizError, ValueError):
    """A usage or configuration mistake: bad option values, an invalid config file (exit 2)."""

    exit_code = 2


class InputError(GlavizError, ValueError):
    """Input data that cannot be used: wrong band count, no CRS, no overlap, missing group."""


class WeightsError(GlavizError, ValueError):
    """A weights file or model bundle that cannot be loaded into the requested architecture."""


class OutputExistsError(GlavizError, FileExistsError):
    """An output that already exists and would be overwritten without ``--overwrite`` (exit 3).

    Its own exit code lets batch scripts tell "already done" from a typo (2) or a failure (1).
    """

    exit_code = 3


class OutputLockedError(GlavizError, BlockingIOError):
    """Another glaviz run is writing into the same output folder (exit code 1: try again later)."""


class DownloadError(GlavizError, OSError):
    """A download that failed after all retries, or that no source is known for."""


class OutputWriteError(GlavizError, OSError):
    """An output that cannot be written: a full disk, a read-only folder, a failed write.

    Exit code 1 like any runtime failure; its own class so that scripts and batch summaries can
    tell "free some space or choose another folder" from bad input data.
    """


class OutOfMemoryError(GlavizError, MemoryError):
    """The model or a buffer did not fit in memory (a TensorFlow ``ResourceExhaustedError``, a
    ``MemoryError``); the message names the setting that lowers the need (exit code 1)."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``exc``'s message, cut to ``limit`` characters (with "…"), or the
    exception's type name when it says nothing: the cause inside a one-line ``Error:``."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    if limit is not None and len(line) > limit:
        line = line[:limit] + "…"
    return line


#: What each exit status means, keyed by the classes' own codes so the words cannot drift from
#: them. Help texts and docs are generated from this table (:func:`exit_codes_help`).
EXIT_MEANINGS: dict[int, str] = {
    0: "done or skipped",
    GlavizError.exit_code: "data or runtime error",
    ConfigError.exit_code: "usage or configuration error",
    OutputExistsError.exit_code: "output exists",
}

#: Exit status of a run stopped by signal N (SIGINT 130, SIGTERM 143, SIGHUP 129).
SIGNAL_EXIT_BASE = 128


def exit_codes_help() -> str:
    """The one sentence every help text uses to list the exit codes."""
    codes = ", ".join(f"{code} {meaning}" for code, meaning in sorted(EXIT_MEANINGS.items()))
    return f"Exit codes: {codes}; {SIGNAL_EXIT_BASE} + N when stopped by signal N."
