"""Detecting a corrupt memory database, and ``loom memory repair``.

``check(path)`` runs SQLite's ``quick_check`` (a full b-tree walk, no index
cross-check: fast enough to run at every start) and returns None or what is wrong.
``repair(path)`` moves the damaged files aside (``memory.db.corrupt-<time>``, kept for
forensics or a manual ``sqlite3 .recover``), salvages every row it can still read from
``memories``, ``sessions`` and ``meta`` (page by page, skipping unreadable rows), and
writes them into a fresh database with the current schema; the full-text index is
rebuilt by the insert triggers and vectors are kept (or recomputed at the next start).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from .store import Store

HINT = ("stop the daemon and run `loom memory repair` (it keeps the damaged file and salvages what it can), "
        "or restore memory.db from your last good backup")
_MISSES = 2000  # unreadable rowids in a row before a table scan gives up
_TABLES = {
    "memories": ("id", "kind", "session_id", "role", "text", "importance", "emotion", "emotion_label", "created_at",
                 "last_access", "access_count", "archived_at", "archive_reason", "metadata", "vector",
                 "vector_model"),
    "sessions": ("rowid", "id", "started_at", "last_at", "turns", "title", "last_text"),
    "meta": ("rowid", "key", "value"),
}


class MemoryCorrupt(RuntimeError):
    """The memory database is damaged; the message says what to do."""


def check(path: Path) -> str | None:
    """None when the database at ``path`` is sound (or absent), else SQLite's complaint."""
    if not Path(path).exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if rows == ["ok"] else "; ".join(str(r) for r in rows)


def corrupt_error(path: Path, problem: str) -> MemoryCorrupt:
    return MemoryCorrupt(f"the memory database {path} is corrupt ({problem[:300]}); {HINT}")


def _salvage(conn: sqlite3.Connection, table: str, cols: tuple[str, ...]) -> tuple[list[tuple], int]:
    """Rows of ``table`` in rowid order that can still be read, and how many reads failed."""
    key = "rowid" if cols[0] == "rowid" else cols[0]
    select = f"SELECT {', '.join(cols)} FROM {table}"
    rows: list[tuple] = []
    failed = 0
    last = 0
    misses = 0
    while misses < _MISSES:
        try:
            batch = conn.execute(f"{select} WHERE {key} > ? ORDER BY {key} LIMIT 256", (last,)).fetchall()
        except sqlite3.DatabaseError:
            batch = None
        if batch == []:
            break
        if batch:
            rows.extend(batch)
            last = batch[-1][0]
            misses = 0
            continue
        # The page holding the next rows is damaged: step over it one rowid at a time.
        last += 1
        try:
            one = conn.execute(f"{select} WHERE {key} = ?", (last,)).fetchall()
        except sqlite3.DatabaseError:
            failed += 1
            misses += 1
            continue
        if one:
            rows.extend(one)
            misses = 0
        else:
            misses += 1
    return rows, failed


def repair(path: Path) -> dict[str, Any]:
    """Rebuild the database at ``path`` from what can be read; see the module docstring."""
    path = Path(path)
    if not path.exists():
        return {"database": str(path), "status": "absent", "message": "there is no memory database yet"}
    problem = check(path)
    if problem is None:
        return {"database": str(path), "status": "ok", "message": "the memory database is sound; nothing to do"}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            shutil.move(src, f"{aside}{suffix}")
    recovered: dict[str, int] = {}
    unreadable = 0
    salvaged: dict[str, list[tuple]] = {}
    try:
        old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        try:
            for table, cols in _TABLES.items():
                try:
                    rows, failed = _salvage(old, table, cols)
                except sqlite3.DatabaseError:
                    rows, failed = [], 1
                salvaged[table] = rows
                unreadable += failed
        finally:
            old.close()
    except sqlite3.DatabaseError:
        salvaged = {}
    store = Store(path)
    try:
        conn = store.conn
        conn.execute("BEGIN IMMEDIATE")
        for table, cols in _TABLES.items():
            rows = salvaged.get(table, [])
            names = [c for c in cols if c != "rowid"]
            values = [r[1:] if cols[0] == "rowid" else r for r in rows]
            sql = (f"INSERT OR REPLACE INTO {table}({', '.join(names)}) "
                   f"VALUES ({', '.join('?' * len(names))})")
            good = 0
            for v in values:
                try:
                    conn.execute(sql, v)
                    good += 1
                except sqlite3.DatabaseError:
                    unreadable += 1
            recovered[table] = good
        conn.execute("COMMIT")
    finally:
        store.close()
    return {"database": str(path), "status": "repaired", "problem": problem[:300], "damaged_copy": str(aside),
            "recovered": recovered, "unreadable": unreadable,
            "message": f"rebuilt {path.name} with {recovered.get('memories', 0)} memories; the damaged file is "
                       f"kept as {aside.name}"}
