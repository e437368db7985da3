"""Feature groups: the model's named inputs and the stack bands that feed them.

These names are part of the command contract (``--features optical,dem``, stack band descriptions,
benchmark HDF5 datasets), so they live in one place.
"""

from __future__ import annotations

from glaviz.errors import ConfigError

#: Band count of every feature group GlaViTU knows, in the canonical order.
GROUP_BANDS: dict[str, int] = {
    "optical": 6,
    "dem": 2,
    "co_pol_sar": 2,
    "cross_pol_sar": 2,
    "in_sar": 2,
    "thermal": 1,
}

#: Stack band descriptions per group, in stack order (``glaviz features`` writes these).
GROUP_STACK_BANDS: dict[str, tuple[str, ...]] = {
    "optical": tuple(f"optical:{i}" for i in range(1, 7)),
    "dem": ("elevation", "slope"),
    "co_pol_sar": ("co_pol_sar:1", "co_pol_sar:2"),
    "cross_pol_sar": ("cross_pol_sar:1", "cross_pol_sar:2"),
    "in_sar": ("in_sar:1", "in_sar:2"),
    "thermal": ("thermal",),
}

#: The regions of the benchmark dataset, in the order of the published region encoding.
REGIONS: tuple[str, ...] = ("ALP", "AN", "AWA", "CA", "GR", "HMA", "LL", "NZ", "SA", "SC", "SVAL")

DEFAULT_FEATURES: tuple[str, ...] = ("optical", "dem")


def parse_features(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Turn ``"optical,dem"`` (or a list) into a validated tuple of group names, order kept."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    groups = tuple(item.strip() for item in items if item.strip())
    if not groups:
        raise ConfigError("no feature groups given; use e.g. --features optical,dem")
    unknown = [g for g in groups if g not in GROUP_BANDS]
    if unknown:
        raise ConfigError(
            f"unknown feature group(s) {', '.join(unknown)}; "
            f"known groups are {', '.join(GROUP_BANDS)}"
        )
    if len(set(groups)) != len(groups):
        raise ConfigError(f"feature groups repeat in {','.join(groups)}; name each group once")
    return groups


def group_bands(groups: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Ordered ``{group: band count}`` for the given group names."""
    return {g: GROUP_BANDS[g] for g in parse_features(list(groups))}
