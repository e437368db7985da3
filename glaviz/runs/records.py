"""Run records: what a finished run depended on, so a re-run can tell whether it may skip.

A record's ``fingerprint`` holds everything an output depends on: the glaviz version, the
resolved configuration (minus options that only steer behaviour, such as ``overwrite``), each
input file's size and modification time, and the weights' sha256. Two fingerprints are compared
field by field, and the differences are reported in words, so ``--skip-existing`` can say *what*
changed instead of only that something did.

The record's ``config`` section is the command's resolved configuration as JSON, which makes a
run record a valid ``--config`` file for the same command.

:func:`prepare_outputs` is the one implementation of ``--skip-existing`` / ``--overwrite`` for every
command. It imports no TensorFlow: the weights are resolved through the registry (a file path),
and their sha256 is read from the cache's verification record when there is one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from glaviz import __version__
from glaviz.config.base import BEHAVIOUR_FLAGS
from glaviz.runs.atomic import write_text_atomic
from glaviz.runs.outputs import output_exists
from glaviz.util.hashing import sha256_file

if TYPE_CHECKING:
    from glaviz.config.base import CommandConfig

C = TypeVar("C", bound="CommandConfig")
logger = logging.getLogger(__name__)


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
    ignore: Iterable[str] = (),
) -> dict[str, Any]:
    """What an output depends on. ``config`` is the resolved configuration as JSON-able values;
    ``ignore`` names its fields that do not change the outputs (see :func:`config_fingerprint`)."""
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
    """A run record, or ``None`` when it is missing or unreadable (an incomplete output).

    The one reader of ``run.json`` files: skip decisions, ``--config run.json`` and
    :func:`glaviz.open_result` all come here.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------------------------------
# Records of command configurations


def record_config(config: CommandConfig) -> dict[str, Any]:
    """A configuration as it goes into a run record: JSON values, absolute paths, no overwrite or
    skip flags (feeding the record back with ``--config`` must not overwrite by surprise)."""
    from glaviz.config.loading import absolute_paths

    data = config.model_dump(mode="json", exclude=set(BEHAVIOUR_FLAGS))
    # A config built in Python may hold relative paths; the record must mean the same elsewhere.
    data = absolute_paths(type(config), data, Path.cwd())
    return json.loads(json.dumps(data, default=str))


def weights_file(config: CommandConfig) -> Path | None:
    """The weights file a configuration's ``weights`` option resolves to (no TensorFlow)."""
    spec = getattr(config, "weights", None)
    if spec is None:
        return None
    from glaviz.registry.catalogue import resolve_weights

    return resolve_weights(spec).path


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file; a cached registry file's verification record already holds it."""
    from glaviz.registry.cache import read_info

    info = read_info(Path(path))
    if info is not None and isinstance(info.get("sha256"), str):
        return str(info["sha256"])
    return sha256_file(path)


def config_fingerprint(config: CommandConfig, *, weights: Path | None = None) -> dict[str, Any]:
    """The fingerprint of a run of ``config`` (``weights``: the resolved file, if it has one).

    The behaviour flags and the model's output fields are left out: where the outputs go and
    whether they may be replaced does not change what they hold.
    """
    return fingerprint(
        record_config(config),
        inputs=config.input_files(),
        weights_sha256=weights_sha256(weights) if weights is not None else None,
        ignore=BEHAVIOUR_FLAGS | type(config).OUTPUT_FIELDS,
    )


def run_record(
    config: CommandConfig, *, command: str, weights: Path | None = None
) -> dict[str, Any]:
    """The part of a run record that makes it re-runnable and skippable."""
    return {
        "glaviz": __version__,
        "command": command,
        "config": record_config(config),
        "fingerprint": config_fingerprint(config, weights=weights),
    }


def write_record(
    path: Path,
    record: Mapping[str, Any],
    *,
    atomic: bool = True,
    outputs: Mapping[str, Path] | None = None,
) -> Path:
    """Write a run record (after the outputs it describes): the one writer of ``run.json``.

    ``finished`` is added when the caller has not set it. ``outputs`` maps each output's final
    name (relative to the record's folder) to the file that holds it now, perhaps under a
    temporary name: their sizes go into the record, so a later ``--skip-existing`` can tell a
    complete run from one whose files were cut or removed since (:func:`damaged_outputs`).
    ``atomic=False`` writes straight to ``path``, for a temporary name that an output folder
    renames at its commit.
    """
    data = dict(record)
    data.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if outputs:
        data["outputs"] = {
            name: {"size": Path(file).stat().st_size} for name, file in sorted(outputs.items())
        }
    text = json.dumps(data, indent=2, default=_jsonable) + "\n"
    if atomic:
        return write_text_atomic(path, text)
    Path(path).write_text(text)
    return Path(path)


def _jsonable(value: Any) -> Any:
    """JSON for the values records hold besides JSON's own: paths and numpy scalars or arrays."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy here
        return value.tolist()
    return str(value)


@dataclass
class Skipped:
    """A run that ``--skip-existing`` did not redo: its outputs and record match this run."""

    where: Path
    record: Path
    outputs: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"record": str(self.record), "outputs": [str(p) for p in self.outputs]}

    def message(self) -> str:
        return f"skipped: {self.where} is complete and its run record matches this run"


def prepare_outputs(config: C) -> C | Skipped:
    """Decide what to do about existing outputs, before any heavy work: the one implementation
    of ``--overwrite`` and ``--skip-existing`` for every command.

    Returns the configuration to run with, or a :class:`Skipped` when ``skip_existing`` and the
    recorded run matches this one with every output intact. A recorded run of this very
    configuration whose outputs were removed or cut since is incomplete: with ``skip_existing``
    it is computed again (the returned configuration replaces its outputs). Anything else in the
    way raises :class:`OutputExistsError` (exit 3) unless ``overwrite``, saying what differs.
    """
    outputs = config.output_files()
    present = [p for p in outputs if p.exists()]
    if not present:
        return config
    skip = bool(getattr(config, "skip_existing", False))
    overwrite = bool(getattr(config, "overwrite", False))
    where = present[0] if len(outputs) == 1 else present[0].parent
    if not skip:
        if overwrite:
            return config
        raise output_exists(
            where,
            "already exists",
            fix="pass --overwrite to replace it, or --skip-existing to keep it when it was made "
            "by the same run",
        )
    diffs = existing_differences(config, outputs)
    if not diffs:
        return Skipped(where=where, record=config.record_path() or present[0], outputs=outputs)
    if overwrite:
        return config
    if all(d.startswith("incomplete:") for d in diffs):
        logger.warning("%s is an incomplete run (%s); computing it again", where, "; ".join(diffs))
        return config.model_copy(update={"overwrite": True})
    raise output_exists(
        where,
        f"exists but does not match this run ({'; '.join(diffs)})",
        fix="pass --overwrite to replace it",
    )


def existing_differences(config: CommandConfig, outputs: list[Path]) -> list[str]:
    """Why existing outputs do not count as this run's (empty: they do).

    A run of the same configuration whose files were damaged since counts as different too:
    :func:`damaged_outputs` names them.
    """
    missing = [p.name for p in outputs if not p.exists()]
    if missing:
        return [f"incomplete: {', '.join(missing)} missing"]
    path = config.record_path()
    record = read_record(path) if path is not None else None
    if record is None or not isinstance(record.get("fingerprint"), dict):
        return [f"no run record ({path.name if path else 'none'}) to compare with"]
    try:
        current = config_fingerprint(config, weights=weights_file(config))
    except FileNotFoundError as exc:
        return [f"an input is missing ({exc.filename})"]
    return differences(record["fingerprint"], current) or damaged_outputs(record, path.parent)


def damaged_outputs(record: Mapping[str, Any], folder: Path) -> list[str]:
    """The recorded outputs (``outputs`` of a record) that are missing or changed size since.

    Sizes are what a cut copy, a half-synced folder or a hand edit changes; comparing them costs
    one ``stat`` per file, where a hash would read gigabytes of COGs on every re-run.
    """
    recorded = record.get("outputs")
    if not isinstance(recorded, dict):
        return []
    damage = []
    for name, meta in sorted(recorded.items()):
        file = folder / name
        size = meta.get("size") if isinstance(meta, dict) else None
        if not file.is_file():
            damage.append(f"incomplete: {name} missing")
        elif isinstance(size, int) and file.stat().st_size != size:
            damage.append(
                f"incomplete: {name} is {file.stat().st_size:,} bytes, the run wrote {size:,}"
            )
    return damage


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
