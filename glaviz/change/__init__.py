"""Glacier change between dates, glacier by glacier, with uncertainty (``glaviz change``).

``compute_change(config)`` is the engine. The modules follow the data: ``inputs`` (what each
input is, and its date), ``grid`` (the earliest date's grid, every date read onto it),
``units`` (each date's glaciers as labels), ``match`` (which glacier is which across a date
pair), ``measure`` (geodesic areas, unobserved area, both uncertainties), ``table`` (the rows
and their sums), ``outputs`` and ``figure`` (the files) and ``run`` (the engine itself).

Like ``glaviz.inventory``, the package is callable as the notebook function
``glaviz.change(config)`` (see :mod:`glaviz.util.modules` for why).
"""

from __future__ import annotations

from glaviz.change.run import ChangeResult, compute_change
from glaviz.util.modules import callable_package

__all__ = ["ChangeResult", "compute_change"]

callable_package(__name__, "glaviz.api:change")
