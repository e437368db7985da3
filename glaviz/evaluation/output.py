"""Writing results: JSON under a temporary name beside the target, then renamed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from glaviz.atomic import write_text_atomic

__all__ = ["write_json_atomic"]


def write_json_atomic(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON; an interrupted write never leaves a half file.

    ``allow_nan=False``: undefined scores are ``None`` (``null``) by construction, and a NaN that
    slipped through would make a file that strict JSON readers reject.
    """
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
