"""Published GlaViTU models: the registry, the local weights cache, and fetching into it.

Other commands need only :func:`resolve_weights` (``--weights NAME|FILE``) and
:func:`calibration_path` (``--calibration NAME|FILE``); ``glaviz fetch-weights`` uses the rest.
Importing this package is cheap: requests, filelock and TensorFlow load only when used.
"""

from __future__ import annotations

from glaviz.registry.cache import cached_path, glaviz_home, weights_dir
from glaviz.registry.catalogue import (
    ModelEntry,
    Registry,
    ResolvedWeights,
    calibration_names,
    calibration_path,
    load_registry,
    resolve_weights,
)
from glaviz.registry.download import RetryPolicy
from glaviz.registry.fetch import (
    CacheStatus,
    FetchResult,
    cache_status,
    fetch_model,
    import_model,
    verify_weights,
)

__all__ = [
    "CacheStatus",
    "FetchResult",
    "ModelEntry",
    "Registry",
    "ResolvedWeights",
    "RetryPolicy",
    "cache_status",
    "cached_path",
    "calibration_names",
    "calibration_path",
    "fetch_model",
    "glaviz_home",
    "import_model",
    "load_registry",
    "resolve_weights",
    "verify_weights",
    "weights_dir",
]
