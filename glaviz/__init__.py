"""glaviz: glacier mapping with GlaViTU (Maslov et al., Nature Communications 2025).

The top-level package stays import-light on purpose: ``glaviz --help`` must not pull in TensorFlow,
rasterio or h5py. Heavy modules are imported where they are used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("glaviz")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
