"""``glaviz.inventory``, ``glaviz.change`` and ``glaviz.acquire`` are notebook functions and
packages at once."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["inventory", "change", "acquire"])
def test_the_function_survives_importing_its_package(name: str, monkeypatch) -> None:
    import glaviz
    import glaviz.api

    importlib.import_module(f"glaviz.{name}")  # sets glaviz.<name> to the package
    calls = []
    monkeypatch.setattr(glaviz.api, name, lambda *a, **k: calls.append((a, k)) or "ran")
    assert getattr(glaviz, name)("config", progress=True) == "ran"
    assert calls == [(("config",), {"progress": True})]
    # and the package is still the package
    assert hasattr(getattr(glaviz, name), "__path__")
