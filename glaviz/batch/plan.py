"""Scene planning: each scene's resolved settings, folder, fingerprint and shard.

Planning runs in the client, before any worker starts: it resolves every scene's deploy and
features configuration (so a bad option fails the scene at once, not on a worker), computes the
fingerprint a finished scene is recorded with, and decides which scenes still need work.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glaviz.config.acquire import AcquireConfig
from glaviz.config.base import BEHAVIOUR_FLAGS
from glaviz.config.batch import ACQUIRE_FOLDER, JobConfig, SceneSpec
from glaviz.config.deploy import DeployConfig
from glaviz.config.features import FeaturesConfig
from glaviz.errors import ConfigError, GlavizError

#: The stack a raw-input scene is compiled into, inside its folder.
STACK_NAME = "stack.tif"


def shard_of(scene_id: str, shards: int) -> int:
    """The shard (0 … shards-1) a scene belongs to: a stable hash of its id.

    sha256 rather than ``hash()``: Python salts string hashes per process, and every process of a
    job array must agree on the split without talking to the others.
    """
    if shards < 1:
        raise ConfigError(f"the number of shards must be at least 1, got {shards}")
    digest = hashlib.sha256(scene_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with 0 ≤ I < N (shards are numbered from 0, like array task ids)."""
    left, sep, right = text.partition("/")
    try:
        index, count = int(left), int(right)
    except ValueError:
        index, count = -1, 0
    if not sep or count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4 (in a SLURM array: "
            "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
        )
    return index, count


@dataclass(frozen=True)
class ScenePlan:
    """Everything a worker needs to process one scene, and what its record must match."""

    id: str
    date: str | None
    folder: Path
    deploy: DeployConfig
    features: FeaturesConfig | None
    fingerprint: dict[str, Any]
    #: A scene built from a region: acquired into OUTPUT/<id>/acquire/ before deploy.
    acquire: AcquireConfig | None = None

    @property
    def stack(self) -> Path:
        return self.deploy.stack


@dataclass(frozen=True)
class PlanError:
    """A scene whose settings cannot be resolved (unknown weights, missing inputs)."""

    id: str
    date: str | None
    error: str


class WeightsHashes:
    """sha256 of each weights file, computed once per run (files reach hundreds of MB)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int], str] = {}

    def of(self, spec: str) -> str:
        from glaviz.registry.catalogue import resolve_weights
        from glaviz.util.hashing import sha256_file

        path = resolve_weights(spec).path.resolve()
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._cache:
            self._cache[key] = sha256_file(path)
        return self._cache[key]


def plan_scene(
    job: JobConfig, spec: SceneSpec, *, hashes: WeightsHashes | None = None
) -> ScenePlan | PlanError:
    """Resolve one scene. Settings or input problems become a :class:`PlanError`, not a raise."""
    from glaviz.runs.records import fingerprint

    folder = job.output / spec.id
    date = spec.date.isoformat() if spec.date else None
    try:
        acquire = job.acquire_config(spec, output=folder / ACQUIRE_FOLDER)
        stack = spec.stack if spec.stack is not None else folder / STACK_NAME
        if acquire is not None:
            stack = acquire.output / STACK_NAME
        features = job.features_config(spec, output=folder / STACK_NAME)
        deploy = job.deploy_config(spec, stack=stack, outdir=folder)
        inputs = _inputs(features, acquire, stack)
        for name in ("region_vector", "calibration"):
            value = getattr(deploy, name)
            if value is not None and Path(value).is_file():
                inputs[name] = Path(value)
        # The region of interest, with a shapefile's side files (deploy's own inputs).
        roi_inputs = deploy.input_files()
        for name in ("roi", "roi_from_reference"):
            inputs.update({k: v for k, v in roi_inputs.items() if k.split(":")[0] == name})
        missing = [f"{n} {p}" for n, p in inputs.items() if not Path(p).exists()]
        if missing:
            raise ConfigError(f"input not found: {', '.join(missing)}")
        sha = (hashes or WeightsHashes()).of(deploy.weights)
        config = {
            "deploy": deploy.model_dump(
                mode="json", exclude={"stack", *deploy.OUTPUT_FIELDS, *BEHAVIOUR_FLAGS}
            ),
            "features": _settings(features),
        }
        if acquire is not None:  # only then: finished scenes of older jobs keep their prints
            config["acquire"] = _settings(acquire)
        fp = fingerprint(config, inputs=inputs, weights_sha256=sha)
    except GlavizError as exc:
        return PlanError(id=spec.id, date=date, error=str(exc))
    except OSError as exc:
        return PlanError(id=spec.id, date=date, error=f"{exc.strerror or exc}: {exc.filename}")
    return ScenePlan(
        id=spec.id,
        date=date,
        folder=folder,
        deploy=deploy,
        features=features,
        fingerprint=fp,
        acquire=acquire,
    )


def _inputs(
    features: FeaturesConfig | None, acquire: AcquireConfig | None, stack: Path
) -> dict[str, Path]:
    """The files a scene reads: the raw inputs, an acquisition's AOI file, or its stack."""
    if features is not None:
        return features.input_files()
    if acquire is not None:  # the stack is written by the scene itself
        return acquire.input_files()
    return {"stack": stack}


def _settings(config: FeaturesConfig | AcquireConfig | None) -> dict[str, Any] | None:
    """A config's settings for the fingerprint: no output paths, no behaviour flags."""
    if config is None:
        return None
    settings = config.model_dump(mode="json", exclude={*config.OUTPUT_FIELDS, *BEHAVIOUR_FLAGS})
    # features' date came later: left out when unset, so finished undated scenes keep their prints.
    if settings.get("date", ...) is None:
        del settings["date"]
    return settings


def worker_name() -> str:
    """``host:pid`` of this process, for scenes not run on a Dask worker."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
