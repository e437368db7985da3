"""Run an attack in a child process under a memory and time cap, so a regression fails a test
instead of exhausting the machine.

The cap is ``RLIMIT_AS`` (address space) set in the child before it starts, plus a wall-clock
timeout after which the child is killed. An attack that glaviz handles finishes well inside both
and exits with one ``Error:`` line; one that it does not handle dies of ``MemoryError`` or the
timeout, and the test says which.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Address space of a child without TensorFlow: Python, numpy, rasterio and h5py start in ~1 GB.
DEFAULT_MEMORY = 2 << 30


@dataclass(frozen=True)
class Outcome:
    """What a capped child did."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error:")]


def _limit(memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def run_capped(
    args: list[str],
    *,
    memory: int = DEFAULT_MEMORY,
    timeout: float = 30.0,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Outcome:
    """Run ``args`` with the address space capped at ``memory`` bytes for at most ``timeout`` s."""
    started = time.perf_counter()
    child_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=child_env,
            preexec_fn=lambda: _limit(memory),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Outcome(-9, out, err, time.perf_counter() - started, True)
    return Outcome(done.returncode, done.stdout, done.stderr, time.perf_counter() - started, False)


def glaviz(*argv: str, **kwargs: object) -> Outcome:
    """``glaviz ARGV…`` in a capped child (the installed package, as a user runs it)."""
    launcher = "import sys; from glaviz.cli.app import run; sys.argv[0] = 'glaviz'; run()"
    return run_capped([sys.executable, "-c", launcher, *argv], **kwargs)  # type: ignore[arg-type]


def python(code: str, **kwargs: object) -> Outcome:
    """``python -c CODE`` in a capped child."""
    return run_capped([sys.executable, "-c", code], **kwargs)  # type: ignore[arg-type]
