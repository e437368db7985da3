"""Resolve ``--weights`` and load a model for inference, checking it against the user's options.

``--weights`` may be a registry name, a published Keras 2 checkpoint (``.h5``) or a glaviz bundle.
Checkpoints carry no metadata, so their architecture is read from the tensors and compared with
``--features`` and the location options; bundles carry their own features, normalisation
statistics, region names and calibration.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from glaviz.errors import ConfigError, WeightsError
from glaviz.model.glavitu import GlaViTUConfig

if TYPE_CHECKING:
    from glaviz.model.bundle import BundleMetadata
    from glaviz.model.checkpoint import CheckpointInfo
    from glaviz.published.normalisation import NormalisationStats
    from glaviz.registry.catalogue import ModelEntry

log = logging.getLogger(__name__)

LocationMode = Literal["none", "region", "coordinate"]


@dataclass
class InferenceModel:
    """A model ready to predict, with everything deploy needs to feed it."""

    model: Any
    config: GlaViTUConfig
    stats: NormalisationStats
    path: Path
    kind: Literal["bundle", "checkpoint"]
    registry_name: str | None = None
    calibration: dict[str, Any] | None = None
    calibration_name: str | None = None
    region_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.config.feature_groups)


class ModelCache:
    """Loaded models kept for processes that deploy many scenes (a ``glaviz batch`` worker).

    Building GlaViTU and reading its weights costs seconds per scene; a worker that maps scene
    after scene with the same weights loads them once. The key holds everything a loaded model
    depends on: the resolved weights file (with its size and modification time, so a replaced
    file is loaded again), the feature groups, the location mode, MC dropout and the precision.
    At most ``max_models`` stay loaded (least recently used first out), and a lock makes the
    cache safe for worker threads. :meth:`runner` keeps each model's compiled batch runner too,
    so a scene with the batch size of an earlier one does not trace the model again.
    """

    def __init__(self, max_models: int = 2) -> None:
        self.max_models = max_models
        self.hits = 0
        self._models: OrderedDict[tuple[Any, ...], InferenceModel] = OrderedDict()
        self._runners: dict[tuple[int, int, bool, int], Any] = {}
        self._lock = threading.Lock()

    def runner(self, model: InferenceModel, batch_size: int, config: Any) -> Any:
        """The :class:`~glaviz.engine.inference.BatchedModel` of ``model`` for a deploy
        ``config`` (its TTA and MC dropout), built once per batch size."""
        from glaviz.engine.inference import BatchedModel

        key = (id(model), batch_size, bool(config.tta), int(config.mc))
        with self._lock:
            if key not in self._runners:
                self._runners[key] = BatchedModel.for_deploy(model, batch_size, config)
            return self._runners[key]

    def load(
        self,
        weights: str | Path,
        *,
        features: tuple[str, ...] | None = None,
        location: LocationMode | None = None,
        mc_dropout: bool = False,
        precision: str = "float32",
    ) -> InferenceModel:
        """:func:`load_for_inference`, or the model an earlier identical call loaded."""
        from glaviz.registry.catalogue import resolve_weights

        path = resolve_weights(str(weights)).path
        stat = path.stat() if path.exists() else None
        state = (stat.st_size, stat.st_mtime_ns) if stat else None
        key = (str(path), state, features, location, mc_dropout, precision)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                self.hits += 1
                return self._models[key]
            model = load_for_inference(
                weights,
                features=features,
                location=location,
                mc_dropout=mc_dropout,
                precision=precision,
            )
            self._models[key] = model
            while len(self._models) > self.max_models:
                _, dropped = self._models.popitem(last=False)
                for runner_key in [k for k in self._runners if k[0] == id(dropped)]:
                    del self._runners[runner_key]
            return model


@dataclass(frozen=True)
class WeightsInfo:
    """What ``--weights`` is, read without TensorFlow: enough to check a run before loading.

    ``config`` is the architecture with its feature groups named (from the bundle, or for a
    checkpoint from the file, the registry entry or ``--features``).
    """

    path: Path
    kind: Literal["bundle", "checkpoint"]
    config: GlaViTUConfig
    entry: ModelEntry | None = None  # None for a plain file
    metadata: BundleMetadata | None = None  # of a bundle
    checkpoint: CheckpointInfo | None = None  # of a checkpoint

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.config.feature_groups)

    @property
    def registry_name(self) -> str | None:
        return self.entry.name if self.entry else None

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The calibration a bundle carries, if any."""
        return self.metadata.calibration if self.metadata is not None else None

    @property
    def calibration_name(self) -> str | None:
        """The packaged calibration the registry names for these weights, if any."""
        return self.entry.calibration if self.entry else None

    @property
    def region_names(self) -> list[str] | None:
        known = self.metadata.region_names if self.metadata is not None else None
        if known is None and self.kind == "checkpoint" and self.entry is not None:
            known = self.entry.region_order
        return _region_names(self.config, known)


def inspect_weights(
    weights: str | Path,
    *,
    features: tuple[str, ...] | None = None,
    location: LocationMode | None = None,
) -> WeightsInfo:
    """Resolve ``weights`` and check them against the user's options, without TensorFlow.

    Reads a bundle's metadata or a checkpoint's tensor shapes (h5py) only, in well under a
    second, so that an unknown name, weights not yet downloaded, a corrupt file or a features or
    location mismatch is reported before TensorFlow is imported. ``features`` and ``location``
    are as in :func:`load_for_inference`.
    """
    from glaviz.model.bundle import is_bundle, read_metadata
    from glaviz.model.checkpoint import inspect_checkpoint
    from glaviz.registry.catalogue import resolve_weights

    resolved = resolve_weights(str(weights))
    entry, path = resolved.entry, resolved.path
    if is_bundle(path):
        meta = read_metadata(path)
        config = meta.architecture
        _check_features(config, features, path)
        _check_location(config, location, path)
        return WeightsInfo(path=path, kind="bundle", config=config, entry=entry, metadata=meta)
    info = inspect_checkpoint(path)
    names = _group_names(info.feature_groups, features, entry, path)
    config = info.config.model_copy(update={"feature_groups": names})
    _check_location(config, location, path)
    return WeightsInfo(path=path, kind="checkpoint", config=config, entry=entry, checkpoint=info)


def load_for_inference(
    weights: str | Path,
    *,
    features: tuple[str, ...] | None = None,
    location: LocationMode | None = None,
    mc_dropout: bool = False,
    precision: str = "float32",
) -> InferenceModel:
    """Load ``weights`` for inference under the given precision.

    ``features``: the user's ``--features`` (None: take the model's own). ``location``: what the
    user supplies (``region`` for a region vector, ``coordinate`` for coordinate encoding, ``none``
    for nothing; None: don't check). Mismatches raise :class:`ConfigError` or :class:`WeightsError`
    naming what the model needs and what was given, before TensorFlow is imported
    (:func:`inspect_weights`).
    """
    info = inspect_weights(weights, features=features, location=location)
    from glaviz.engine.inference import dtype_policy, policy_scope
    from glaviz.model.bundle import load_bundle
    from glaviz.model.checkpoint import load_checkpoint
    from glaviz.published.normalisation import NormalisationStats
    from glaviz.util.tf import prefer_sequential_ops

    prefer_sequential_ops()
    policy = dtype_policy(precision)
    path = info.path
    if info.kind == "bundle":
        with policy_scope(policy):
            bundle = load_bundle(path, mc_dropout=mc_dropout)
        meta = bundle.metadata
        stats = (
            NormalisationStats.from_dict(meta.normalization)
            if meta.normalization
            else NormalisationStats.published()
        )
        return InferenceModel(
            model=_folded(bundle.inference_model),
            config=meta.architecture,
            stats=stats,
            path=path,
            kind="bundle",
            registry_name=info.registry_name,
            calibration=meta.calibration,
            calibration_name=info.calibration_name,
            region_names=info.region_names,
        )

    config = info.config.model_copy(update={"mc_dropout": mc_dropout})
    with policy_scope(policy):
        _, infer, _ = load_checkpoint(path, config=config, info=info.checkpoint)
    return InferenceModel(
        model=_folded(infer),
        config=config,
        stats=NormalisationStats.published(),
        path=path,
        kind="checkpoint",
        registry_name=info.registry_name,
        calibration_name=info.calibration_name,
        region_names=info.region_names,
    )


def _folded(model: Any) -> Any:
    """``model`` with its batch norms folded into its convolutions: the same predictions up to
    rounding, about a tenth faster in float32 and a sixth in bfloat16 on a CPU
    (:mod:`glaviz.model.folding`). Loaded models here only ever predict, so folding is safe."""
    from glaviz.model.folding import fold_batch_norm

    log.debug("folded %d batch norms into their convolutions", fold_batch_norm(model))
    return model


def _region_names(config: GlaViTUConfig, known: Any) -> list[str] | None:
    """The one naming convention of region slots (:func:`.location.region_names`)."""
    from glaviz.published.location import region_names

    if config.location_encoding != "region":
        return None
    return region_names(config.location_size, known=list(known) if known else None)


def _group_names(
    found: dict[str, int], features: tuple[str, ...] | None, entry: Any, path: Path
) -> dict[str, int]:
    """Name the checkpoint's inputs: from the file, the registry entry or ``--features``."""
    from glaviz.published.groups import GROUP_BANDS

    if features is None:
        if entry is not None and len(entry.features) == len(found):
            features = tuple(entry.features)
        elif all(name in GROUP_BANDS for name in found):
            return found
        else:
            raise ConfigError(
                f"{path.name} does not name its inputs ({'+'.join(map(str, found.values()))} "
                "bands); pass --features, e.g. --features optical,dem"
            )
    wanted = {g: GROUP_BANDS.get(g, 0) for g in features}
    named = all(name in GROUP_BANDS for name in found)
    if list(wanted.values()) != list(found.values()) or (named and list(found) != list(wanted)):
        have = "+".join(f"{g}({n})" for g, n in found.items())
        asked = "+".join(f"{g}({n})" for g, n in wanted.items())
        raise WeightsError(
            f"{path.name} was trained on {have}, but --features asks for {asked}; "
            f"use --features {','.join(found) if named else '…'} or other weights"
        )
    return wanted


def _check_features(config: GlaViTUConfig, features: tuple[str, ...] | None, path: Path) -> None:
    if features is not None and tuple(features) != tuple(config.feature_groups):
        raise WeightsError(
            f"{path.name} is a model for {', '.join(config.feature_groups)}, but --features asks "
            f"for {', '.join(features)}; drop --features (bundles know their inputs)"
        )


def _check_location(config: GlaViTUConfig, location: LocationMode | None, path: Path) -> None:
    if location is None:
        return
    if config.uses_location and location == "none":
        hint = (
            "--coordinate-encoding"
            if config.location_encoding == "coordinate"
            else "--region-vector RV.json (make one with glaviz optimise-bias)"
        )
        raise ConfigError(
            f"{path.name} needs a location input of size {config.location_size} "
            f"({config.location_encoding} encoding); pass {hint}"
        )
    if not config.uses_location and location != "none":
        option = "--region-vector" if location == "region" else "--coordinate-encoding"
        raise ConfigError(f"{path.name} has no location input; drop {option}")
    if location == "coordinate" and config.location_size != 4:
        raise ConfigError(
            f"--coordinate-encoding gives 4 values, but {path.name} has a location input of "
            f"size {config.location_size}; pass --region-vector instead"
        )
