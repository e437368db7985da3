"""Subcommands. Importing this package registers every command module found in it.

Each module imports ``app`` from :mod:`glaviz.cli.app` and decorates its command function. Modules
must keep heavy imports (TensorFlow, rasterio, h5py) inside the command body.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_module.name}")
