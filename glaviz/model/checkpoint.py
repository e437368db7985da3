"""Import of the published Keras 2 HDF5 checkpoints into glaviz's Keras 3 GlaViTU.

Keras 2 ``save_weights`` wrote one HDF5 group per top-level layer, and inside each group the
attribute ``weight_names`` lists the layer's trainable tensors first (in creation order), then the
non-trainable ones (batch-norm moving statistics). glaviz's layers create their sublayers in the
published order, so the published order is recovered from ``layer.weights`` by putting the moving
statistics last. Every tensor is shape-checked before anything is assigned.

The architecture itself can be read from a checkpoint (:func:`inspect_checkpoint`): fusion kernels
give the feature groups, the location block's first kernel the location size, the positional
embedding the patch size, and the remaining shapes the model size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glaviz.errors import WeightsError, first_line
from glaviz.model.glavitu import TOKEN_SIZE, GlaViTUConfig, build_glavitu, validated
from glaviz.published.groups import GROUP_BANDS

_STATS = ("moving_mean", "moving_variance")
_LOCATION_GROUP = "location_encoding_block"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a published checkpoint says about its own architecture."""

    path: Path
    feature_groups: dict[str, int]
    location_size: int | None
    patch_size: int
    config: GlaViTUConfig
    keras_version: str

    def describe(self) -> str:
        return self.config.describe()


def _decode(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


class _Reader:
    """Reads layer groups and their tensors from a Keras 2 weights file, with clear errors."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        try:
            self.file = h5py.File(path, "r")
        except OSError as exc:
            raise WeightsError(
                f"{path} is not a readable HDF5 weights file ({first_line(exc, 160)}); "
                "it may be truncated or not a Keras checkpoint; download it again"
            ) from None
        root = self.file.get("model_weights", self.file)
        if "layer_names" not in root.attrs:
            self.file.close()
            raise WeightsError(
                f"{path} is HDF5 but not a Keras 2 weights checkpoint (no 'layer_names' attribute)"
            )
        self.root = root
        self.keras_version = _decode(root.attrs.get("keras_version", "unknown"))
        self.groups: dict[str, list[str]] = {}
        for name in (_decode(n) for n in root.attrs["layer_names"]):
            group = root[name]
            names = [_decode(w) for w in group.attrs.get("weight_names", [])]
            self.groups[name] = names

    def close(self) -> None:
        self.file.close()

    def shape(self, group: str, weight: str) -> tuple[int, ...]:
        try:
            return tuple(self.root[group][weight].shape)
        except (KeyError, OSError) as exc:
            raise WeightsError(
                f"{self.path}: tensor {weight} listed but unreadable ({first_line(exc, 160)}); "
                "the file is damaged or truncated; download it again"
            ) from None

    def value(self, group: str, weight: str) -> np.ndarray:
        try:
            return np.asarray(self.root[group][weight][()])
        except (KeyError, OSError) as exc:
            raise WeightsError(
                f"{self.path}: cannot read tensor {weight} ({first_line(exc, 160)}); "
                "the file is damaged or truncated; download it again"
            ) from None

    def weighted_groups(self) -> dict[str, list[str]]:
        return {name: w for name, w in self.groups.items() if w}


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read feature groups, location size, patch size and model size from a checkpoint."""
    path = Path(path)
    reader = _Reader(path)
    try:
        return _inspect(reader)
    finally:
        reader.close()


def _inspect(reader: _Reader) -> CheckpointInfo:
    groups = reader.weighted_groups()
    for required in ("fusion_block", "SETR", "ResUNet", "output"):
        if required not in groups:
            raise WeightsError(
                f"{reader.path} is not a GlaViTU checkpoint: it has no '{required}' layer group "
                f"(found {', '.join(groups) or 'no weighted groups'})"
            )

    def shapes(group: str, pattern: str) -> list[tuple[int, ...]]:
        rx = re.compile(pattern)
        return [reader.shape(group, w) for w in groups[group] if rx.search(w)]

    fusion = [s for s in shapes("fusion_block", r"conv2d(_\d+)?/kernel") if len(s) == 4]
    branch_bands = [s[2] for s in fusion[0::2]]
    width = fusion[0][3]
    names = [n for n, w in reader.groups.items() if not w and n in GROUP_BANDS]
    if len(names) != len(branch_bands):
        names = [f"input{i + 1}" for i in range(len(branch_bands))]
    feature_groups = dict(zip(names, branch_bands, strict=True))

    location_size = 0
    location_group = next((g for g in groups if g.startswith(_LOCATION_GROUP)), None)
    if location_group is not None:
        location_size = shapes(location_group, r"kernel")[0][0]

    positional = shapes("SETR", r"positional_embedding")
    embed = shapes("SETR", r"patch_embedding.*kernel")
    if not positional or not embed:
        raise WeightsError(f"{reader.path}: SETR group lacks the patch or positional embedding")
    tokens, embedding = positional[0]
    patch_size = math.isqrt(tokens) * TOKEN_SIZE
    query = shapes("SETR", r"query/kernel")
    blocks = len(query)
    heads = query[0][1] if query else 4
    mlp = shapes("SETR", r"transformer_block/dense(_\d+)?/kernel")
    decoder = [s for s in shapes("SETR", r"^conv2d(_\d+)?/kernel") if s[0] == 3]
    unet_convs = [s for s in shapes("ResUNet", r"conv2d(_\d+)?/kernel") if s[0] == 3]
    residuals = len(unet_convs) // 2
    location_encoding = "none"
    if location_size:
        location_encoding = "coordinate" if location_size == 4 else "region"
    n_classes = reader.shape("output", groups["output"][0])[-1]
    config = validated(
        {
            "feature_groups": feature_groups,
            "patch_size": patch_size,
            "n_classes": n_classes,
            "location_size": location_size,
            "location_encoding": location_encoding,
            "width": width,
            "embedding": embedding,
            "blocks": blocks,
            "heads": heads,
            "mlp": mlp[0][1] if mlp else 4 * embedding,
            "decoder_filters": decoder[0][3] if decoder else width,
            "unet_steps": max(1, (residuals - 1) // 2),
            "unet_filters": unet_convs[0][3] if unet_convs else width,
        }
    )
    return CheckpointInfo(
        path=reader.path,
        feature_groups=feature_groups,
        location_size=location_size or None,
        patch_size=patch_size,
        config=config,
        keras_version=reader.keras_version,
    )


def published_order(layer: Any) -> list[Any]:
    """A layer's variables in Keras 2 checkpoint order: trainables, then moving statistics."""
    weights = list(layer.weights)
    stats = [w for w in weights if w.path.rsplit("/", 1)[-1] in _STATS]
    rest = [w for w in weights if w.path.rsplit("/", 1)[-1] not in _STATS]
    return rest + stats


def _match_group(name: str, layer_names: set[str]) -> str | None:
    if name in layer_names:
        return name
    if name.startswith(_LOCATION_GROUP) and _LOCATION_GROUP in layer_names:
        return _LOCATION_GROUP
    return None


def assign_checkpoint(model: Any, path: str | Path, *, hint: str = "") -> int:
    """Shape-check every tensor of ``path`` against ``model`` and assign them all.

    Nothing is assigned unless every tensor fits. Returns the number of tensors assigned.
    ``hint`` is appended to shape errors (e.g. what the file's own architecture is).
    """
    path = Path(path)
    reader = _Reader(path)
    try:
        layers = {layer.name: layer for layer in model.layers if layer.weights}
        plan: list[tuple[Any, str, str]] = []
        matched: set[str] = set()
        for group, names in reader.weighted_groups().items():
            target = _match_group(group, set(layers))
            if target is None:
                raise WeightsError(
                    f"{path}: layer group '{group}' has no counterpart in the model "
                    f"({', '.join(layers)}){hint}"
                )
            matched.add(target)
            variables = published_order(layers[target])
            for i, variable in enumerate(variables):
                if i >= len(names):
                    raise WeightsError(
                        f"{path}: group '{group}' ends after {len(names)} tensors, but the model "
                        f"also needs {variable.path} of shape {tuple(variable.shape)}{hint}"
                    )
                found = reader.shape(group, names[i])
                if tuple(variable.shape) != found:
                    raise WeightsError(
                        f"{path}: tensor {names[i]} does not fit: the model expects shape "
                        f"{tuple(variable.shape)}, the file has {found}{hint}"
                    )
                plan.append((variable, group, names[i]))
            if len(names) > len(variables):
                extra = names[len(variables)]
                raise WeightsError(
                    f"{path}: tensor {extra} of shape {reader.shape(group, extra)} has no "
                    f"counterpart in the model{hint}"
                )
        missing = sorted(set(layers) - matched)
        if missing:
            raise WeightsError(
                f"{path}: the file has no weights for model layer(s) {', '.join(missing)}{hint}"
            )
        for variable, group, name in plan:
            variable.assign(reader.value(group, name).astype(variable.dtype))
        return len(plan)
    finally:
        reader.close()


def load_checkpoint(
    path: str | Path,
    *,
    config: GlaViTUConfig | None = None,
    mc_dropout: bool = False,
    info: CheckpointInfo | None = None,
) -> tuple[Any, Any, CheckpointInfo]:
    """Build GlaViTU for a published checkpoint and load it (under the caller's dtype policy).

    Without ``config`` the architecture is read from the file itself. With ``config`` (for example
    from ``--features``), the file must match it; a mismatch raises :class:`WeightsError` naming the
    first tensor that does not fit and what the file was trained with. ``info``: the file's
    :func:`inspect_checkpoint`, when the caller has already read it.
    Returns ``(training_model, inference_model, info)``; both models share the weights.
    """
    info = info if info is not None else inspect_checkpoint(path)
    if config is None:
        config = info.config
    if mc_dropout:
        config = config.model_copy(update={"mc_dropout": True})
    train, infer = build_glavitu(config)
    hint = "" if config == info.config else f" (the file holds a model for {info.describe()})"
    assign_checkpoint(train, path, hint=hint)
    return train, infer, info


def verify_checkpoint(
    path: str | Path,
    *,
    feature_groups: dict[str, int] | None = None,
    location_size: int | None = None,
) -> CheckpointInfo:
    """Check that ``path`` loads into its GlaViTU architecture, every tensor's shape included.

    ``feature_groups`` and ``location_size`` are what a registry entry promises; a file that holds
    anything else raises :class:`WeightsError`. Weights are assigned to a throwaway model, so a
    file that passes is known to load.
    """
    info = inspect_checkpoint(path)
    expected = dict(feature_groups) if feature_groups is not None else info.feature_groups
    if feature_groups is not None and list(expected.values()) != list(info.feature_groups.values()):
        raise WeightsError(
            f"{path} holds a model for {info.describe()}, not the expected "
            f"{'+'.join(f'{g}({n})' for g, n in expected.items())}"
        )
    if location_size is not None and (info.location_size or 0) != location_size:
        raise WeightsError(
            f"{path} has location input size {info.location_size or 0}, expected {location_size}"
        )
    config = info.config.model_copy(update={"feature_groups": expected})
    train, _ = build_glavitu(config)
    assign_checkpoint(train, path)
    return info
