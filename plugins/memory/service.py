"""The memory service: one writer thread with group commit, a background indexer, and
hybrid recall (embedding similarity + FTS5), all scored by the forgetting curve.

Write path: ``remember`` queues an ``Insert`` for the writer thread, which drains
whatever is queued, runs it in one transaction (WAL, ``synchronous=FULL``) and only
then acknowledges each caller. Under load many writes share one fsync; alone, a write
costs one commit. The text is what must be durable; its vector is derived data, so a
background indexer embeds new rows after they are acknowledged and writes the vectors
back (a row killed before its vector was stored is simply embedded again at the next
start). Until then, text search finds it.

Recall: the query's embedding against the in-memory matrix of every active vector,
merged with FTS5 matches, each candidate scored by relevance times a retention factor
(Ebbinghaus curve boosted by importance, emotion and accesses). Returned memories are
"touched" (access count + 1, last access now), which is what makes often-recalled
memories last.
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
import re
import threading
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import numpy as np

from core.logging import get_logger

from . import embedder as embedders
from .index import VectorIndex
from .retention import KIND_CODE, KINDS, ago, retention_array
from .settings import MemorySettings
from .store import Archive, Insert, NewMemory, Op, Restore, SessionTurn, SetVectors, Store, Touch

log = get_logger("loom.memory")

_STOP = object()
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = """
a an the and or but if then of to in on at by for with about from into over is are was were be been being
do does did have has had i me my mine you your we our they them their he she it its this that these those
what which who whom whose when where why how can could should would will shall may might must not no yes
so as than too very just also there here all any some
el la los las un una unos unas y o pero si de del al a en con por para sobre que qué quien quién como cómo
cuando cuándo donde dónde es son fue era ser estar está están yo tu tú mi mis su sus nos se le lo les me te
este esta estos estas ese esa eso muy más ya no sí también hay
"""


def _plain(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


STOPWORDS = frozenset(_plain(w) for w in _STOPWORDS.split())


class MemoryError_(RuntimeError):
    """A memory operation failed; the message is meant for the user."""


class MemoryService:
    def __init__(self, data_dir: str | Path, settings: MemorySettings | None = None, *, app: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.data_dir = Path(data_dir)
        self.settings = settings or MemorySettings()
        self.app = app
        self.clock = clock
        self.store: Store | None = None
        self.embedder: embedders.Embedder | None = None
        self.index: VectorIndex | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._indexer: threading.Thread | None = None
        self._index_wake = threading.Event()
        self._indexed = threading.Event()  # set when no row waits for its vector
        self._stopping = False
        self._token: Any = None
        self._working: dict[str, deque[dict[str, Any]]] = {}
        self._qcache: OrderedDict[str, Any] = OrderedDict()
        self._last_sweep = 0.0
        self._ndocs: int | None = None  # memories at start (idf); writes since are in stats
        self.stats = {"writes": 0, "commits": 0, "embedded": 0, "archived": 0}

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> MemoryService:
        from core import datadir

        datadir.hold(self.data_dir)  # DataDirLocked: another process owns this data dir
        self._token = anyio.lowlevel.current_token()
        self.embedder = embedders.resolve(self.app, self.settings.embedder)
        await anyio.to_thread.run_sync(self._open)
        self._writer = threading.Thread(target=self._write_loop, name="loom-memory-writer", daemon=True)
        self._writer.start()
        if self.embedder is not None:
            self._indexer = threading.Thread(target=self._index_loop, name="loom-memory-indexer", daemon=True)
            self._indexer.start()
        else:
            self._indexed.set()
        return self

    @property
    def db_path(self) -> Path:
        path = Path(self.settings.db)
        return path if path.is_absolute() else self.data_dir / path

    def _open(self) -> None:
        import sqlite3

        from .repair import check, corrupt_error

        # A damaged database is refused at start with a recovery hint (``loom memory
        # repair``), rather than serving half-readable memories and failing later.
        problem = check(self.db_path)
        if problem is not None:
            raise corrupt_error(self.db_path, problem)
        try:
            self.store = Store(self.db_path)
        except sqlite3.DatabaseError as exc:
            raise corrupt_error(self.db_path, str(exc)) from None
        if self.embedder is not None:
            key = f"{self.embedder.name}"
            if self.store.meta("embedder") not in (None, key):
                log.info("embedder changed; memory vectors will be recomputed", was=self.store.meta("embedder"),
                         now=key)
                self.store.clear_vectors()
            self.store.set_meta("embedder", key)
            for rows in self.store.iter_vectors():
                self._index_rows(rows)
        self._sweep_sync(self.clock())

    def _index_rows(self, rows: list[tuple]) -> None:
        """rows: (id, vector blob, created, last_access, accesses, importance, emotion, kind)."""
        if not rows:
            return
        dim = len(rows[0][1]) // 4
        if self.index is None or self.index.dim != dim:
            self.index = VectorIndex(dim, capacity=max(1024, len(rows)))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim)
        cols = list(zip(*rows, strict=True))
        self.index.add(cols[0], vecs, cols[2], cols[3], cols[4], cols[5], cols[6], [KIND_CODE[k] for k in cols[7]])

    async def close(self) -> None:
        if self.store is None:
            return
        self._stopping = True
        self._index_wake.set()
        if self._indexer is not None:
            await anyio.to_thread.run_sync(self._indexer.join)
        self._queue.put(_STOP)
        if self._writer is not None:
            await anyio.to_thread.run_sync(self._writer.join)
        self.store.close()
        self.store = None

    # -- the writer thread -----------------------------------------------------------------

    def _write_loop(self) -> None:
        assert self.store is not None
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[Op] = [first]
            while len(batch) < 2048:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self.store.apply(batch)
                self.stats["commits"] += 1
            except BaseException as exc:  # the whole transaction failed (disk full, I/O error)
                log.error("memory commit failed", error=repr(exc), ops=len(batch))
                for op in batch:
                    op.error = op.error or exc
                    op.result = None
            self._after_commit(batch)
            self._ack(batch)

    def _after_commit(self, batch: list[Op]) -> None:
        for op in batch:
            if op.error is not None:
                continue
            try:
                if isinstance(op, Insert):
                    self.stats["writes"] += len(op.rows)
                    with_vec = [(i, m) for i, m in zip(op.result, op.rows, strict=True) if m.vector is not None]
                    if with_vec:
                        self._index_rows([(i, m.vector, m.created_at, m.last_access or m.created_at,
                                           m.access_count, m.importance, m.emotion, m.kind) for i, m in with_vec])
                    if len(with_vec) < len(op.rows) and self.embedder is not None:
                        self._indexed.clear()
                        self._index_wake.set()
                elif isinstance(op, Touch) and self.index is not None:
                    self.index.touch(op.ids, op.ts)
                elif isinstance(op, Archive) and self.index is not None:
                    self.index.deactivate(op.result)
                    self.stats["archived"] += len(op.result)
                elif isinstance(op, SetVectors):
                    self._index_rows(op.index_rows)
                elif isinstance(op, Restore) and op.result:
                    self._indexed.clear()
                    self._reindex_ids(op.result)
            except Exception as exc:  # the commit stands; only the cache missed an update
                log.error("memory index update failed", error=repr(exc))

    def _reindex_ids(self, ids: list[int]) -> None:
        assert self.store is not None
        marks = ",".join("?" * len(ids))
        rows = self.store.reader().execute(
            "SELECT id, vector, created_at, last_access, access_count, importance, emotion, kind FROM memories"
            f" WHERE id IN ({marks}) AND vector IS NOT NULL", ids).fetchall()
        self._index_rows(rows)
        self._index_wake.set()

    def _ack(self, batch: list[Op]) -> None:
        by_loop: dict[Any, list[Any]] = {}
        for op in batch:
            if op.future is not None:
                if op.error is not None:
                    op.future.set_exception(op.error)
                else:
                    op.future.set_result(op.result)
            elif op.event is not None:
                by_loop.setdefault(op.token, []).append(op.event)
        for token, events in by_loop.items():
            try:
                anyio.from_thread.run_sync(_set_all, events, token=token)
            except Exception as exc:  # that caller's event loop is gone; nobody is waiting
                log.debug("memory ack skipped", error=repr(exc))

    async def _submit(self, op: Op) -> Any:
        if self.store is None or self._stopping:
            raise MemoryError_("memory is not running (the memory plugin did not start; see `loom plugins`)")
        if not op.wait:
            self._queue.put(op)
            return None
        op.event = anyio.Event()
        op.token = anyio.lowlevel.current_token()
        self._queue.put(op)
        # Cancelling the caller does not cancel the write: it is queued and will commit.
        await op.event.wait()
        if op.error is not None:
            raise MemoryError_(f"memory write failed: {op.error}") from op.error
        return op.result

    def submit_sync(self, op: Op, timeout: float | None = 30.0) -> Any:
        """For threads (the indexer, sweeps): queue ``op`` and wait for its commit."""
        op.future = concurrent.futures.Future()
        self._queue.put(op)
        return op.future.result(timeout)

    # -- the indexer thread ----------------------------------------------------------------

    def _index_loop(self) -> None:
        interval = self.settings.sweep_interval
        while not self._stopping:
            self._index_wake.wait(timeout=interval if interval > 0 else None)
            self._index_wake.clear()
            if self._stopping:
                break
            try:
                self._drain_unindexed()
            except Exception as exc:
                log.error("memory indexing failed; will retry", error=repr(exc))
                self._index_wake.wait(timeout=5.0)
            if interval > 0 and time.monotonic() - self._last_sweep >= interval:
                try:
                    self._sweep_sync(self.clock())
                except Exception as exc:
                    log.error("memory sweep failed", error=repr(exc))

    def _drain_unindexed(self) -> None:
        assert self.store is not None and self.embedder is not None
        while not self._stopping:
            rows = self.store.unindexed(self.settings.index_batch)
            if not rows:
                self._indexed.set()
                return
            vecs = self._embed_sync([r[1] for r in rows])
            blobs = [vecs[j].tobytes() for j in range(len(rows))]
            op = SetVectors(pairs=[(r[0], blobs[j]) for j, r in enumerate(rows)], model=self.embedder.name,
                            index_rows=[(r[0], blobs[j], *r[2:8]) for j, r in enumerate(rows)])
            self.submit_sync(op)
            self.stats["embedded"] += len(rows)

    def _embed_sync(self, texts: list[str]) -> Any:
        emb = self.embedder
        assert emb is not None
        if hasattr(emb, "embed_sync"):
            out = emb.embed_sync(texts)
        else:
            out = anyio.from_thread.run(emb.embed, texts, token=self._token)
        return np.ascontiguousarray(out, np.float32)

    async def wait_indexed(self, timeout: float = 30.0) -> bool:
        """Wait until every stored memory has its vector (tests, benchmarks)."""
        return await anyio.to_thread.run_sync(self._indexed.wait, timeout)

    # -- forgetting ------------------------------------------------------------------------

    def _sweep_sync(self, now: float) -> list[int]:
        """Archive every active memory whose retention fell under the threshold."""
        assert self.store is not None
        self._last_sweep = time.monotonic()
        rows = self.store.scoring_columns()
        if not rows:
            return []
        ids, kinds, imp, emo, acc, last = zip(*rows, strict=True)
        r = retention_array(now, last, [KIND_CODE[k] for k in kinds], imp, emo, acc, self.settings.retention)
        gone = [int(i) for i in np.asarray(ids)[r < self.settings.retention.archive_below]]
        if not gone:
            return []
        op = Archive(ids=gone, ts=now, reason="faded (forgetting curve)")
        if self._writer is None:  # at start, before the writer runs
            self.store.apply([op])
            self._after_commit([op])
        else:
            self.submit_sync(op)
        log.info("memories archived by the forgetting curve", count=len(op.result or []))
        return op.result or []

    async def sweep(self) -> list[int]:
        return await anyio.to_thread.run_sync(self._sweep_sync, self.clock())

    # -- public API --------------------------------------------------------------------------

    def _check(self, text: str, kind: str, importance: float, emotion: float) -> str:
        text = (text or "").strip()
        if not text:
            raise MemoryError_("nothing to remember: the text is empty")
        if len(text) > self.settings.max_text:
            raise MemoryError_(f"the text is {len(text)} characters; memories are limited to "
                               f"{self.settings.max_text} (split it, or raise [plugin.memory] max_text)")
        if kind not in KINDS:
            raise MemoryError_(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not (0.0 <= importance <= 1.0) or not (0.0 <= emotion <= 1.0):
            raise MemoryError_("importance and emotion are between 0 and 1")
        return text

    def _new(self, text: str, kind: str = "episodic", *, session_id: str | None = None, role: str | None = None,
             importance: float = 0.5, emotion: float = 0.0, emotion_label: str | None = None,
             metadata: dict[str, Any] | None = None, at: float | None = None,
             vector: Any = None) -> NewMemory:
        text = self._check(text, kind, importance, emotion)
        ts = self.clock() if at is None else at
        m = NewMemory(text=text, kind=kind, session_id=session_id, role=role, importance=importance,
                      emotion=emotion, emotion_label=emotion_label, metadata=metadata, created_at=ts, last_access=ts)
        if vector is not None and self.embedder is not None:
            m.vector = np.asarray(vector, np.float32).tobytes()
            m.vector_model = self.embedder.name
        return m

    async def remember(self, text: str, kind: str = "episodic", **kw: Any) -> int:
        """Store one memory; returns its id once it is durable."""
        m = self._new(text, kind, **kw)
        ids = await self._submit(Insert(rows=[m]))
        if kind == "working" or m.session_id is not None:
            self._working_add(m)
        return ids[0]

    async def remember_many(self, items: list[dict[str, Any]]) -> list[int]:
        """Store several memories in one transaction (all or none)."""
        rows = [self._new(**it) for it in items]
        return await self._submit(Insert(rows=rows))

    async def touch(self, ids: list[int]) -> None:
        if ids:
            await self._submit(Touch(ids=ids, ts=self.clock(), wait=False))

    async def forget(self, ids: list[int], reason: str = "forgotten on request") -> list[int]:
        return await self._submit(Archive(ids=ids, ts=self.clock(), reason=reason)) if ids else []

    async def restore(self, ids: list[int]) -> list[int]:
        return await self._submit(Restore(ids=ids, ts=self.clock())) if ids else []

    async def note_turn(self, session_id: str, text: str) -> None:
        await self._submit(SessionTurn(session_id=session_id, ts=self.clock(), text=text))

    def get(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        assert self.store is not None
        return self.store.fetch(ids)

    async def sessions(self, limit: int = 20) -> list[dict[str, Any]]:
        now = self.clock()
        rows = await anyio.to_thread.run_sync(self._require().sessions, limit)
        for r in rows:
            r["last_ago"] = ago(r["last_at"], now)
            r["started_ago"] = ago(r["started_at"], now)
        return rows

    async def session(self, session_id: str) -> dict[str, Any] | None:
        row = await anyio.to_thread.run_sync(self._require().session, session_id)
        if row is not None:
            row["last_ago"] = ago(row["last_at"], self.clock())
        return row

    def _require(self) -> Store:
        if self.store is None:
            raise MemoryError_("memory is not running (the memory plugin did not start; see `loom plugins`)")
        return self.store

    # -- working memory --

    def _working_add(self, m: NewMemory) -> None:
        key = m.session_id or "default"
        dq = self._working.get(key)
        if dq is None:
            return  # not loaded yet: the first read seeds it from the store
        dq.append({"role": m.role, "text": m.text, "ts": m.created_at, "kind": m.kind})

    async def working(self, session_id: str) -> list[dict[str, Any]]:
        """The session's most recent items, oldest first (seeded from the store after a restart)."""
        dq = self._working.get(session_id)
        if dq is None:
            rows = await anyio.to_thread.run_sync(
                lambda: self._require().recent(session_id, self.settings.working_size, ("episodic", "working")))
            dq = deque(({"role": r["role"], "text": r["text"], "ts": r["created_at"], "kind": r["kind"]}
                        for r in reversed(rows)), maxlen=self.settings.working_size)
            self._working[session_id] = dq
        now = self.clock()
        return [dict(item, ago=ago(item["ts"], now)) for item in dq]

    # -- recall --

    async def embed_query(self, text: str) -> Any:
        if self.embedder is None:
            return None
        hit = self._qcache.get(text)
        if hit is not None:
            self._qcache.move_to_end(text)
            return hit
        vec = (await self.embedder.embed([text]))[0]
        self._qcache[text] = vec
        if len(self._qcache) > 256:
            self._qcache.popitem(last=False)
        return vec

    async def recall(self, query: str, k: int = 5, *, kinds: list[str] | None = None,
                     session_id: str | None = None, include_archived: bool = False,
                     touch: bool = True) -> list[dict[str, Any]]:
        """The ``k`` best memories for ``query``: each with its score, retention and "ago"."""
        store = self._require()
        query = (query or "").strip()
        if not query:
            raise MemoryError_("recall needs a query: what should be remembered?")
        if k < 1 or k > 100:
            raise MemoryError_("k must be between 1 and 100")
        for kind in kinds or []:
            if kind not in KINDS:
                raise MemoryError_(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not self._indexed.is_set() and self.settings.recall_wait > 0:
            await anyio.to_thread.run_sync(self._indexed.wait, self.settings.recall_wait)
        # The word search (SQLite, in a thread) runs while the query is embedded: both release
        # the GIL, so on two cores recall costs the longer of the two, not their sum.
        lex: dict[int, float] = {}

        async def words() -> None:
            lex.update(await anyio.to_thread.run_sync(
                self._text_matches, store, query, max(20, 4 * k), include_archived, kinds, session_id))

        async with anyio.create_task_group() as tg:
            tg.start_soon(words)
            qvec = await self.embed_query(query)
        now = self.clock()
        results = await anyio.to_thread.run_sync(
            lambda: self._recall_sync(store, query, qvec, k, kinds, session_id, include_archived, now, lex))
        if touch:  # only real matches count as remembering; a weak filler result does not
            await self.touch([r["id"] for r in results if r["score"] >= self.settings.min_score])
        return results

    def _recall_sync(self, store: Store, query: str, qvec: Any, k: int, kinds: list[str] | None,
                     session_id: str | None, include_archived: bool, now: float,
                     lex: dict[int, float] | None = None) -> list[dict[str, Any]]:
        rs = self.settings.retention
        sims: dict[int, float] = {}
        index = self.index
        if qvec is not None and index is not None and index.dim == len(qvec):
            pool = max(64, 12 * k) if session_id is None else max(512, 50 * k)
            rows, s, snap = index.search(qvec, pool, [KIND_CODE[x] for x in kinds] if kinds else None)
            ids = snap["ids"][rows]
            sims = dict(zip(ids.tolist(), s.tolist(), strict=True))
        if lex is None:
            lex = self._text_matches(store, query, max(20, 4 * k), include_archived, kinds, session_id)
        cand = set(sims) | set(lex)
        if not cand:
            return []
        rows = [r for r in store.fetch(list(cand)).values()
                if (session_id is None or r["session_id"] == session_id)
                and (not kinds or r["kind"] in kinds)
                and (include_archived or r["archived_at"] is None)]
        if not rows:
            return []
        ret = retention_array(now, [r["last_access"] for r in rows], [KIND_CODE[r["kind"]] for r in rows],
                              [r["importance"] for r in rows], [r["emotion"] for r in rows],
                              [r["access_count"] for r in rows], rs)
        scored = []
        for row, r in zip(rows, ret.tolist(), strict=True):
            mid = row["id"]
            sim = sims.get(mid)
            if sim is None and index is not None and qvec is not None and mid in index.row_of:
                sim = float(index.vecs[index.row_of[mid]] @ qvec)
            lx = lex.get(mid, 0.0)
            if sim is None:  # no vector (text-only memory, or not embedded yet)
                relevance = lx if qvec is None else 0.75 * lx
            else:
                relevance = 0.85 * max(sim, 0.0) + 0.15 * lx
            score = relevance * (0.6 + 0.4 * r)
            if score < 0.02:  # unrelated: a candidate only because the pool had room
                continue
            scored.append((round(score, 4), row, sim, lx, r))
        # The result dicts (dates formatted, "ago" worded) only for the k returned: the pool
        # holds 64+ candidates (formatting them all cost ~0.5 ms a recall at 100k memories).
        scored.sort(key=lambda x: (-x[0], -x[1]["created_at"]))
        return [{
            "id": row["id"], "text": row["text"], "kind": row["kind"], "session_id": row["session_id"],
            "role": row["role"], "score": score,
            "similarity": None if sim is None else round(sim, 4), "text_match": round(lx, 4),
            "retention": round(r, 4), "importance": row["importance"], "emotion": row["emotion"],
            "created_at": row["created_at"], "when": _iso(row["created_at"]),
            "ago": ago(row["created_at"], now), "accesses": row["access_count"],
            "archived": row["archived_at"] is not None, "metadata": row["metadata"],
        } for score, row, sim, lx, r in scored[:k]]

    def _text_matches(self, store: Store, query: str, limit: int, include_archived: bool,
                      kinds: list[str] | None, session_id: str | None) -> dict[int, float]:
        """Memories sharing words with the query, as id -> 0..1 (the idf-weighted share of
        the query's known words they contain). The rarest words pick the candidates: all of
        them together first, then any rare one, so a common word never makes SQLite walk
        half the table."""
        words = content_words(query)
        if not words:
            return {}
        try:
            df = store.doc_freq(words)
            present = sorted((w for w in words if df.get(w)), key=lambda w: df[w])
            if not present:
                return {}
            total = max(self._docs(store), 1)
            idf = {w: math.log(1 + total / df[w]) for w in present}
            found = store.text_search(" AND ".join(f'"{w}"' for w in present[:4]), limit, kinds, session_id)
            if len(found) < limit:
                rare = [w for w in present if df[w] <= max(200, 0.02 * total)] or present[:1]
                more = store.text_search(" OR ".join(f'"{w}"' for w in rare), limit, kinds, session_id)
                found += [i for i in more if i not in set(found)][: limit - len(found)]
        except Exception as exc:  # text search must never fail a recall
            log.debug("fts query failed", query=query, error=repr(exc))
            return {}
        if not found:
            return {}
        texts = store.fetch(found)
        whole = sum(idf.values())
        out = {}
        for mid, row in texts.items():
            have = set(content_words(row["text"], keep_all=True))
            out[mid] = sum(v for w, v in idf.items() if w in have) / whole
        return out

    def _docs(self, store: Store) -> int:
        if self._ndocs is None:
            self._ndocs = store.count() + store.count(archived=True)
        return self._ndocs + self.stats["writes"]


def content_words(text: str, keep_all: bool = False) -> list[str]:
    """Lower-cased words without diacritics (FTS5's unicode61 tokens); stopwords dropped."""
    out = []
    for w in _WORD.findall(text.lower()):
        w = _plain(w)
        if not keep_all and (len(w) < 2 or w in STOPWORDS):
            continue
        if w not in out:
            out.append(w)
    return out[:16] if not keep_all else out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def _set_all(events: list[Any]) -> None:
    for e in events:
        e.set()
