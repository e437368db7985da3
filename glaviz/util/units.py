"""Quantities in messages, written the same way everywhere."""

from __future__ import annotations


def format_bytes(n: float, *, binary: bool = True) -> str:
    """``n`` bytes for people.

    ``binary`` (the default) counts in powers of 1024, as ``df -h`` does: ``512 MiB``,
    ``1.5 GiB`` — for disk space, which users compare with their tools. ``binary=False`` counts in
    powers of 1000: ``6.0 GB`` — for the sizes a file declares, compared with the file's own size
    in bytes.
    """
    if not binary:
        for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if n >= scale:
                return f"{n / scale:.1f} {unit}"
        return f"{n:.0f} bytes"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
