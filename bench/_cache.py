"""Resumable answer caches for the long benches (selfcheck.py, reasoning.py).

A cache is one JSON list, an entry per question by position (``None``: not done yet), written
after every question so a run resumes where it stopped. ``--part START:STOP`` lets several
processes share a run (each fills its own cache from START), and ``--merge`` joins them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def merge(paths: list[Path], out: Path) -> tuple[int, int]:
    """Write into ``out`` the union of the caches at ``paths`` (by position): (done, total)."""
    parts = [json.loads(p.read_text()) for p in paths]
    merged = [next((part[i] for part in parts if i < len(part) and part[i] is not None), None)
              for i in range(max(len(part) for part in parts))]
    out.write_text(json.dumps(merged))
    return sum(x is not None for x in merged), len(merged)


def resume(cache: Path | None, part: str | None) -> tuple[list[Any], int | None]:
    """What ``cache`` holds, and where this process's part stops (None: the end)."""
    done = json.loads(cache.read_text()) if cache and cache.is_file() else []
    if not part:
        return done, None
    start, _, stop = part.partition(":")
    try:
        first, last = int(start), int(stop) if stop else None
    except ValueError:
        raise SystemExit(f"--part takes START:STOP or START (e.g. 0:55), not {part!r}") from None
    return done or [None] * first, last  # the entries before START are another process's
