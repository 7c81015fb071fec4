"""Byte counts and rates as people type them: ``10M``, ``512k``, ``1.5MiB``, ``2000000``."""

from __future__ import annotations

import re

__all__ = ["parse_bytes"]

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*(?:/s)?\s*", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """``text`` in bytes: a number with an optional binary suffix (``K``, ``M``, ``G``,
    also written ``KiB``/``KB``; 1 K = 1024 bytes, as in aria2 and curl) and an optional
    ``/s``.

    Raises:
        ValueError: not such a number, or not at least one byte.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a number of bytes (e.g. 500K, 10M, 1G)")
    value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < 1:
        raise ValueError(f"{text!r} is less than one byte")
    return value
