"""Run records: what a finished run depended on, so a re-run can tell whether it may skip.

A record's ``fingerprint`` holds everything an output depends on: the glaviz version, the
resolved configuration (minus options that only steer behaviour, such as ``overwrite``), each
input file's size and modification time, and the weights' sha256. Two fingerprints are compared
field by field, and the differences are reported in words, so ``--skip-existing`` can say *what*
changed instead of only that something did.

The record's ``config`` section is the command's resolved configuration as JSON, which makes a
run record a valid ``--config`` file for the same command.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from glaviz import __version__

#: Configuration fields that steer how a run behaves, not what it produces.
BEHAVIOUR_FIELDS: frozenset[str] = frozenset(
    {"overwrite", "skip_existing", "output", "json_output"}
)


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights files reach a few hundred MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_state(path: Path) -> dict[str, Any]:
    """Size and modification time (ns) of an input: cheap, and changes when the file does."""
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def fingerprint(
    config: Mapping[str, Any],
    *,
    inputs: Mapping[str, Path],
    weights: Path | None = None,
    weights_sha256: str | None = None,
    ignore: Iterable[str] = BEHAVIOUR_FIELDS,
) -> dict[str, Any]:
    """What an output depends on. ``config`` is the resolved configuration as JSON-able values."""
    skip = set(ignore)
    sha = weights_sha256 or (sha256_file(weights) if weights is not None else None)
    return {
        "glaviz": __version__,
        "config": {k: v for k, v in sorted(config.items()) if k not in skip},
        "inputs": {name: file_state(path) for name, path in sorted(inputs.items())},
        "weights_sha256": sha,
    }


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints; empty when they match."""
    diffs: list[str] = []
    if recorded.get("glaviz") != current.get("glaviz"):
        diffs.append(f"glaviz version {recorded.get('glaviz')} → {current.get('glaviz')}")
    if recorded.get("weights_sha256") != current.get("weights_sha256"):
        diffs.append("weights changed (sha256 differs)")
    old_cfg, new_cfg = recorded.get("config", {}), current.get("config", {})
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(key) != new_cfg.get(key):
            diffs.append(f"{key}: {_short(old_cfg.get(key))} → {_short(new_cfg.get(key))}")
    old_in, new_in = recorded.get("inputs", {}), current.get("inputs", {})
    for name in sorted(set(old_in) | set(new_in)):
        if name not in old_in or name not in new_in:
            diffs.append(f"input {name} {'added' if name in new_in else 'removed'}")
        elif old_in[name] != new_in[name]:
            diffs.append(f"input {name} changed (size or modification time)")
    return diffs


def read_record(path: Path) -> dict[str, Any] | None:
    """A run record, or ``None`` when it is missing or unreadable (an incomplete output)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
