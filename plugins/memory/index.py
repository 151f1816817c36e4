"""The in-memory vector index: one float32 matrix plus per-row columns for scoring.

SQLite is the source of truth (vectors are stored there as float32 blobs); this is a
cache rebuilt at start. A top-k query is one matrix-vector product over every active
row (100k x 384 is ~40M multiply-adds, a few milliseconds), an ``argpartition`` for the
best candidates, and the forgetting curve applied to those candidates only.

Rows are appended in place (capacity doubles) and archived rows are masked, never
moved, so a reader holding a snapshot of the arrays never sees a row change identity.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .retention import KIND_CODE


class VectorIndex:
    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self.lock = threading.Lock()
        self.n = 0
        self.row_of: dict[int, int] = {}
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
        self.cap = cap

    def __len__(self) -> int:
        return int(self.active[: self.n].sum())

    def add(self, ids: Any, vecs: Any, created: Any, last_access: Any, accesses: Any, importance: Any,
            emotion: Any, kind: Any) -> None:
        """Append rows (a memory already present is updated in place)."""
        vecs = np.asarray(vecs, np.float32).reshape(-1, self.dim)
        with self.lock:
            for j, mid in enumerate(np.asarray(ids, np.int64).tolist()):
                row = self.row_of.get(mid)
                if row is None:
                    if self.n == self.cap:
                        self._alloc(self.cap * 2)
                    row = self.n
                    self.n += 1
                    self.row_of[mid] = row
                self.vecs[row] = vecs[j]
                self.ids[row] = mid
                self.created[row] = _at(created, j)
                self.last_access[row] = _at(last_access, j)
                self.accesses[row] = _at(accesses, j)
                self.importance[row] = _at(importance, j)
                self.emotion[row] = _at(emotion, j)
                k = _at(kind, j)
                self.kind[row] = KIND_CODE[k] if isinstance(k, str) else k
                self.active[row] = True

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
            return {name: getattr(self, name)[:n] for name in
                    ("vecs", "ids", "created", "last_access", "accesses", "importance", "emotion", "kind", "active")}

    def search(self, query: Any, pool: int, kinds: list[int] | None = None) -> tuple[Any, Any, dict[str, Any]]:
        """The ``pool`` most similar active rows: (row indexes, cosine similarities, snapshot)."""
        snap = self.snapshot()
        n = len(snap["ids"])
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), snap
        sims = snap["vecs"] @ np.asarray(query, np.float32)
        mask = ~snap["active"]
        if kinds is not None:
            mask |= ~np.isin(snap["kind"], np.asarray(kinds, np.int8))
        sims[mask] = -np.inf
        pool = min(pool, n)
        rows = np.argpartition(-sims, pool - 1)[:pool] if pool < n else np.arange(n)
        rows = rows[np.isfinite(sims[rows])]
        return rows, sims[rows], snap


def _at(value: Any, j: int) -> Any:
    if isinstance(value, np.ndarray | list | tuple):
        return value[j]
    return value
