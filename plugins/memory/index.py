"""The in-memory vector index: one float32 matrix plus per-row columns for scoring.

SQLite is the source of truth (vectors are stored there as float32 blobs); this is a
cache rebuilt at start. A top-k query is one matrix-vector product over every active
row (100k x 384 is ~40M multiply-adds, a few milliseconds), an ``argpartition`` for the
best candidates, and the forgetting curve applied to those candidates only.

Rows are appended in place (capacity doubles) and archived rows are masked, never
moved, so a reader holding a snapshot of the arrays never sees a row change identity.

Past ``COARSE_FROM`` rows the scan is memory-bound (100k x 384 float32 is 150 MB read per
query), so a second, 96-wide copy of the matrix is kept: each vector projected on the top
principal directions of the stored vectors (uncentred, so dot products are preserved as
well as 96 dimensions can). A query scans the narrow copy for a few hundred candidates and
re-scores those exactly with the full vectors: a quarter of the memory traffic, the same
top results in practice.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .retention import KIND_CODE

COARSE_DIM = 96
COARSE_FROM = 20_000  # rows before the narrow copy pays for itself
FIT_SAMPLE = 8192


class VectorIndex:
    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self.lock = threading.Lock()
        self.n = 0
        self.row_of: dict[int, int] = {}
        self.proj: Any = None  # (dim, COARSE_DIM) once fitted
        self.low: Any = None
        self._alloc(max(capacity, 16))

    def _alloc(self, cap: int) -> None:
        old = self.n
        fields = {
            "vecs": ((cap, self.dim), np.float32),
            "ids": ((cap,), np.int64),
            "created": ((cap,), np.float64),
            "last_access": ((cap,), np.float64),
            "accesses": ((cap,), np.float32),
            "importance": ((cap,), np.float32),
            "emotion": ((cap,), np.float32),
            "kind": ((cap,), np.int8),
            "active": ((cap,), bool),
        }
        for name, (shape, dtype) in fields.items():
            arr = np.zeros(shape, dtype)
            if old:
                arr[:old] = getattr(self, name)[:old]
            setattr(self, name, arr)
        if self.proj is not None:
            low = np.zeros((cap, self.proj.shape[1]), np.float32)
            low[:old] = self.low[:old]
            self.low = low
        self.cap = cap

    def _fit(self) -> None:
        """Principal directions of (a sample of) the stored vectors; project every row."""
        rng = np.random.default_rng(0)
        pick = rng.choice(self.n, min(self.n, FIT_SAMPLE), replace=False)
        _, _, vt = np.linalg.svd(self.vecs[pick], full_matrices=False)
        proj = np.ascontiguousarray(vt[:COARSE_DIM].T, np.float32)
        low = np.zeros((self.cap, proj.shape[1]), np.float32)
        low[: self.n] = self.vecs[: self.n] @ proj
        self.low, self.proj = low, proj

    def __len__(self) -> int:
        return int(self.active[: self.n].sum())

    def add(self, ids: Any, vecs: Any, created: Any, last_access: Any, accesses: Any, importance: Any,
            emotion: Any, kind: Any) -> None:
        """Append rows (a memory already present is updated in place). Columns may be scalars."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        m = len(ids)
        vecs = np.asarray(vecs, np.float32).reshape(m, self.dim)
        kind = np.asarray([KIND_CODE[k] if isinstance(k, str) else k for k in np.broadcast_to(
            np.asarray(kind, object), (m,)).tolist()], np.int8)
        with self.lock:
            rows = np.empty(m, np.int64)
            fresh = 0
            for j, mid in enumerate(ids.tolist()):
                row = self.row_of.get(mid)
                if row is None:
                    row = self.n + fresh
                    self.row_of[mid] = row
                    fresh += 1
                rows[j] = row
            if self.n + fresh > self.cap:
                cap = self.cap
                while cap < self.n + fresh:
                    cap *= 2
                self._alloc(cap)
            self.vecs[rows] = vecs
            self.ids[rows] = ids
            for name, value in (("created", created), ("last_access", last_access), ("accesses", accesses),
                                ("importance", importance), ("emotion", emotion)):
                getattr(self, name)[rows] = np.broadcast_to(np.asarray(value, np.float64), (m,))
            self.kind[rows] = kind
            self.active[rows] = True
            if self.proj is not None:
                self.low[rows] = vecs @ self.proj
            self.n += fresh
            if self.proj is None and self.n >= COARSE_FROM and self.dim > 2 * COARSE_DIM:
                self._fit()

    def touch(self, ids: list[int], ts: float) -> None:
        with self.lock:
            for mid in ids:
                row = self.row_of.get(mid)
                if row is not None:
                    self.accesses[row] += 1
                    self.last_access[row] = ts

    def deactivate(self, ids: list[int]) -> None:
        with self.lock:
            for mid in ids:
                row = self.row_of.get(mid)
                if row is not None:
                    self.active[row] = False

    def snapshot(self) -> dict[str, Any]:
        """Views of the live rows; safe to read without the lock (rows never move)."""
        with self.lock:
            n = self.n
            snap = {name: getattr(self, name)[:n] for name in
                    ("vecs", "ids", "created", "last_access", "accesses", "importance", "emotion", "kind", "active")}
            snap["low"] = self.low[:n] if self.proj is not None else None
            snap["proj"] = self.proj
            return snap

    def search(self, query: Any, pool: int, kinds: list[int] | None = None) -> tuple[Any, Any, dict[str, Any]]:
        """The ``pool`` most similar active rows: (row indexes, cosine similarities, snapshot)."""
        snap = self.snapshot()
        n = len(snap["ids"])
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), snap
        query = np.asarray(query, np.float32)
        mask = ~snap["active"]
        if kinds is not None:
            mask |= ~np.isin(snap["kind"], np.asarray(kinds, np.int8))
        pool = min(pool, n)
        if snap["proj"] is not None and n > 4 * pool:
            coarse = snap["low"] @ (query @ snap["proj"])
            coarse[mask] = -np.inf
            wide = min(max(8 * pool, 512), n)
            cand = np.argpartition(-coarse, wide - 1)[:wide]
            cand = cand[np.isfinite(coarse[cand])]
            exact = snap["vecs"][cand] @ query
            keep = np.argsort(-exact)[:pool]
            return cand[keep], exact[keep], snap
        sims = snap["vecs"] @ query
        sims[mask] = -np.inf
        rows = np.argpartition(-sims, pool - 1)[:pool] if pool < n else np.arange(n)
        rows = rows[np.isfinite(sims[rows])]
        return rows, sims[rows], snap
