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
