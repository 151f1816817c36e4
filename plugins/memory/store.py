"""The SQLite side of memory: schema, the one writer connection, reader connections.

Durability: WAL journal with ``synchronous=FULL``, so a transaction is on disk (the WAL
fsynced) before ``COMMIT`` returns; a write is acknowledged only after its commit. Many
writes share one commit (group commit, see ``service.Writer``) and each write runs in
its own SAVEPOINT, so one bad write fails alone.

Only the writer thread uses ``self.conn``. Readers get one connection per thread
(``query_only``), which WAL lets run beside the writer without blocking.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memories(
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('working', 'episodic', 'semantic')),
    session_id TEXT,
    role TEXT,
    text TEXT NOT NULL,
    importance REAL NOT NULL DEFAULT 0.5,
    emotion REAL NOT NULL DEFAULT 0.0,
    emotion_label TEXT,
    created_at REAL NOT NULL,
    last_access REAL NOT NULL,
    access_count INTEGER NOT NULL DEFAULT 0,
    archived_at REAL,
    archive_reason TEXT,
    metadata TEXT,
    vector BLOB,
    vector_model TEXT
);
CREATE INDEX IF NOT EXISTS memories_session ON memories(session_id, created_at);
CREATE INDEX IF NOT EXISTS memories_unindexed ON memories(id) WHERE vector IS NULL AND archived_at IS NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    text, content='memories', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS memories_vocab USING fts5vocab(memories_fts, row);
CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF text ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TABLE IF NOT EXISTS sessions(
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    last_at REAL NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    title TEXT,
    last_text TEXT
);
"""

COLUMNS = ("id", "kind", "session_id", "role", "text", "importance", "emotion", "emotion_label",
           "created_at", "last_access", "access_count", "archived_at", "archive_reason", "metadata")


@dataclass
class NewMemory:
    text: str
    kind: str = "episodic"
    session_id: str | None = None
    role: str | None = None
    importance: float = 0.5
    emotion: float = 0.0
    emotion_label: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: float = 0.0
    last_access: float | None = None
    access_count: int = 0
    vector: bytes | None = None
    vector_model: str | None = None


# --- write operations: each runs inside the writer's transaction --------------------


@dataclass
class Op:
    result: Any = None
    error: BaseException | None = None
    wait: bool = True  # False: fire and forget (access counts)
    event: Any = None  # anyio.Event for async callers
    token: Any = None  # their event loop
    future: Any = None  # concurrent.futures.Future for sync callers

    def run(self, conn: sqlite3.Connection) -> Any:
        raise NotImplementedError


@dataclass
class Insert(Op):
    rows: list[NewMemory] = field(default_factory=list)

    def run(self, conn: sqlite3.Connection) -> list[int]:
        ids = []
        for m in self.rows:
            cur = conn.execute(
                "INSERT INTO memories(kind, session_id, role, text, importance, emotion, emotion_label, created_at,"
                " last_access, access_count, metadata, vector, vector_model) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (m.kind, m.session_id, m.role, m.text, m.importance, m.emotion, m.emotion_label, m.created_at,
                 m.last_access if m.last_access is not None else m.created_at, m.access_count,
                 json.dumps(m.metadata) if m.metadata else None, m.vector, m.vector_model))
            ids.append(cur.lastrowid)
        return ids


@dataclass
class Touch(Op):
    ids: list[int] = field(default_factory=list)
    ts: float = 0.0

    def run(self, conn: sqlite3.Connection) -> None:
        conn.executemany("UPDATE memories SET access_count = access_count + 1, last_access = ? WHERE id = ?",
                         [(self.ts, i) for i in self.ids])


@dataclass
class Archive(Op):
    ids: list[int] = field(default_factory=list)
    ts: float = 0.0
    reason: str = "forgotten"

    def run(self, conn: sqlite3.Connection) -> list[int]:
        done = []
        for i in self.ids:
            cur = conn.execute("UPDATE memories SET archived_at = ?, archive_reason = ? "
                               "WHERE id = ? AND archived_at IS NULL", (self.ts, self.reason, i))
            if cur.rowcount:
                done.append(i)
        return done


@dataclass
class Restore(Op):
    ids: list[int] = field(default_factory=list)
    ts: float = 0.0

    def run(self, conn: sqlite3.Connection) -> list[int]:
        done = []
        for i in self.ids:
            cur = conn.execute("UPDATE memories SET archived_at = NULL, archive_reason = NULL, last_access = ? "
                               "WHERE id = ? AND archived_at IS NOT NULL", (self.ts, i))
            if cur.rowcount:
                done.append(i)
        return done


@dataclass
class SetVectors(Op):
    pairs: list[tuple[int, bytes]] = field(default_factory=list)
    model: str = ""
    index_rows: list[tuple] = field(default_factory=list)  # what the in-memory index adds after commit

    def run(self, conn: sqlite3.Connection) -> None:
        conn.executemany("UPDATE memories SET vector = ?, vector_model = ? WHERE id = ?",
                         [(v, self.model, i) for i, v in self.pairs])


@dataclass
class SessionTurn(Op):
    session_id: str = "default"
    ts: float = 0.0
    text: str = ""

    def run(self, conn: sqlite3.Connection) -> None:
        title = self.text.strip().replace("\n", " ")[:80]
        conn.execute(
            "INSERT INTO sessions(id, started_at, last_at, turns, title, last_text) VALUES (?,?,?,1,?,?) "
            "ON CONFLICT(id) DO UPDATE SET last_at = excluded.last_at, turns = turns + 1, "
            "last_text = excluded.last_text",
            (self.session_id, self.ts, self.ts, title, title))


# --- the store ---------------------------------------------------------------------------


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = self._connect()
        self.conn.executescript(SCHEMA)
        self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        self._private()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _private(self) -> None:
        """Memories are personal: the database and its WAL files are 0600, whatever the
        process umask (`loom mcp`, the CLI and tests do not set one)."""
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{self.path}{suffix}")
            try:
                if path.stat().st_mode & 0o077:
                    os.chmod(path, 0o600)
            except OSError:
                pass

    def _connect(self, readonly: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RuntimeError(f"{self.path}: could not switch to WAL (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
        return conn

    # -- writing (writer thread only) --

    def apply(self, ops: list[Op]) -> None:
        """Run ``ops`` in one transaction, each in its own savepoint; commit once."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    op.result = op.run(conn)
                    conn.execute("RELEASE op")
                except sqlite3.DatabaseError as exc:
                    if _fatal(exc):
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    op.error = exc
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    op.error = exc
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                          "SET value = excluded.value", (key, value))

    def clear_vectors(self) -> None:
        """Another embedder: every vector must be recomputed."""
        self.conn.execute("UPDATE memories SET vector = NULL, vector_model = NULL WHERE vector IS NOT NULL")

    # -- reading (any thread) --

    def reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def meta(self, key: str) -> str | None:
        row = self.reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def count(self, archived: bool = False) -> int:
        where = "archived_at IS NOT NULL" if archived else "archived_at IS NULL"
        return self.reader().execute(f"SELECT count(*) FROM memories WHERE {where}").fetchone()[0]

    def iter_vectors(self, chunk: int = 20000) -> Iterator[list[tuple]]:
        """Active rows that have a vector, in chunks (to rebuild the index at start)."""
        last = 0
        conn = self.reader()
        while True:
            rows = conn.execute(
                "SELECT id, vector, created_at, last_access, access_count, importance, emotion, kind FROM memories"
                " WHERE id > ? AND archived_at IS NULL AND vector IS NOT NULL ORDER BY id LIMIT ?",
                (last, chunk)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def unindexed(self, limit: int) -> list[tuple]:
        return self.reader().execute(
            "SELECT id, text, created_at, last_access, access_count, importance, emotion, kind FROM memories"
            " WHERE vector IS NULL AND archived_at IS NULL ORDER BY id LIMIT ?", (limit,)).fetchall()

    def fetch(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        cur = self.reader().execute(f"SELECT {', '.join(COLUMNS)} FROM memories WHERE id IN ({marks})", ids)
        return {r[0]: _row(r) for r in cur.fetchall()}

    def doc_freq(self, terms: list[str]) -> dict[str, int]:
        """How many memories contain each term (FTS5's own vocabulary, one index lookup each)."""
        if not terms:
            return {}
        marks = ",".join("?" * len(terms))
        rows = self.reader().execute(f"SELECT term, doc FROM memories_vocab WHERE term IN ({marks})", terms)
        return dict(rows.fetchall())

    def text_search(self, match: str, limit: int, kinds: list[str] | None = None,
                    session_id: str | None = None) -> list[int]:
        """Ids matching an FTS5 expression, newest first. Unranked on purpose: bm25 would
        score every match (tens of thousands for a common word); the caller scores the
        few it gets by the rarity of the words they share with the query."""
        if not kinds and session_id is None:
            sql = "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rowid DESC LIMIT ?"
            params: list[Any] = [match, limit]
        else:
            where = ["memories_fts MATCH ?"]
            params = [match]
            if kinds:
                where.append(f"m.kind IN ({','.join('?' * len(kinds))})")
                params.extend(kinds)
            if session_id is not None:
                where.append("m.session_id = ?")
                params.append(session_id)
            sql = (f"SELECT m.id FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid"
                   f" WHERE {' AND '.join(where)} ORDER BY memories_fts.rowid DESC LIMIT ?")
            params.append(limit)
        return [r[0] for r in self.reader().execute(sql, params).fetchall()]

    def recent(self, session_id: str | None, limit: int, kinds: tuple[str, ...] = ("episodic",)) -> list[dict]:
        marks = ",".join("?" * len(kinds))
        if session_id is None:
            cur = self.reader().execute(
                f"SELECT {', '.join(COLUMNS)} FROM memories WHERE archived_at IS NULL AND kind IN ({marks})"
                " ORDER BY created_at DESC, id DESC LIMIT ?", (*kinds, limit))
        else:
            cur = self.reader().execute(
                f"SELECT {', '.join(COLUMNS)} FROM memories WHERE session_id = ? AND archived_at IS NULL"
                f" AND kind IN ({marks}) ORDER BY created_at DESC, id DESC LIMIT ?", (session_id, *kinds, limit))
        return [_row(r) for r in cur.fetchall()]

    def scoring_columns(self) -> list[tuple]:
        """(id, kind, importance, emotion, access_count, last_access) of every active memory."""
        return self.reader().execute(
            "SELECT id, kind, importance, emotion, access_count, last_access FROM memories"
            " WHERE archived_at IS NULL").fetchall()

    def sessions(self, limit: int) -> list[dict[str, Any]]:
        cur = self.reader().execute(
            "SELECT id, started_at, last_at, turns, title, last_text FROM sessions ORDER BY last_at DESC LIMIT ?",
            (limit,))
        keys = ("id", "started_at", "last_at", "turns", "title", "last_text")
        return [dict(zip(keys, r, strict=True)) for r in cur.fetchall()]

    def session(self, session_id: str) -> dict[str, Any] | None:
        rows = self.reader().execute(
            "SELECT id, started_at, last_at, turns, title, last_text FROM sessions WHERE id = ?",
            (session_id,)).fetchall()
        keys = ("id", "started_at", "last_at", "turns", "title", "last_text")
        return dict(zip(keys, rows[0], strict=True)) if rows else None

    def integrity(self) -> str:
        return self.reader().execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()
        self.conn.close()


def _row(r: tuple) -> dict[str, Any]:
    d = dict(zip(COLUMNS, r, strict=True))
    d["metadata"] = json.loads(d["metadata"]) if d["metadata"] else {}
    return d


def _fatal(exc: sqlite3.DatabaseError) -> bool:
    """Errors that doom the whole transaction (disk full, I/O, corruption), not one write."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
