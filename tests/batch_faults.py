"""Fault injection for the batch tests: a Dask worker plugin that kills its worker mid-scene.

Lives in its own small module so that the worker processes can import it (the test module pulls
in pytest and hypothesis, which workers need not load).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class KillOnce(WorkerPlugin):
    """SIGKILL the worker ``delay`` s after it starts the first attempt of scene ``scene_id``.

    ``marker`` is created first, so the kill happens once per test even if several workers see
    the task. The worker dies as an out-of-memory kill or a node failure would: no exception,
    no clean-up, the task just never finishes.
    """

    name = "kill-once"

    def __init__(self, scene_id: str, marker: Path, delay: float = 1.0) -> None:
        self.scene_id = scene_id
        self.marker = Path(marker)
        self.delay = delay

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or str(key) != f"glaviz-scene-{self.scene_id}-attempt-1":
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        threading.Timer(self.delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
