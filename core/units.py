"""Byte sizes as people write them ("6GiB", "512 MB", 1048576) and as they read them."""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: int | float | str) -> int:
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return int(value)
    m = _SIZE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (write e.g. 6GiB, 512MB or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
NEVER = ("never", "forever", "inf")


def parse_duration(value: int | float | str) -> float:
    """Seconds from a number or an Ollama-style string: ``300``, ``"5m"``, ``"1h30m"``,
    ``"90s"``, ``"-1"`` (negative: never), ``"never"``."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (write e.g. 300, \"5m\", \"1h\" or -1 for never)")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip().lower()
    if text in NEVER:
        return -1.0
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-").replace(" ", "")
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != body:
        raise ValueError(f"not a duration: {value!r} (write e.g. 300, \"5m\", \"1h30m\", \"90s\" or -1 for never)")
    return sign * sum(float(n) * _DURATION_SECONDS[u.lower()] for n, u in parts)
