"""Packages that share their name with a notebook function of ``glaviz``.

``glaviz.inventory(config)``, ``glaviz.change(config)`` and ``glaviz.acquire(config)`` are
functions (see ``glaviz/__init__``), and also the names of the packages of their engines.
Importing a subpackage makes Python set it as an attribute of its parent, so the first ``import
glaviz.change`` anywhere (the engine itself does it) would replace the function with the module,
and ``glaviz.change(config)`` would fail with "'module' object is not callable". Making the package
callable, as that function, keeps both meanings working in any import order.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def callable_package(package: str, function: str) -> None:
    """Let the package named ``package`` be called as ``function`` (``"glaviz.api:change"``).

    The function is imported at the first call, so the package does not import its callers.
    """
    module_name, _, attribute = function.partition(":")

    class _CallablePackage(types.ModuleType):
        __doc__ = sys.modules[package].__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            target = getattr(importlib.import_module(module_name), attribute)
            return target(*args, **kwargs)

    sys.modules[package].__class__ = _CallablePackage
