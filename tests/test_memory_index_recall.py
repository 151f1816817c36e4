"""Recall of the memory index's approximate path (PCA candidates past COARSE_FROM rows) vs exact search.

A quality property, not timing: past ``COARSE_FROM`` rows ``VectorIndex.search`` picks
candidates from a 96-wide projection and re-scores only those, so it can miss a true
neighbour. The set is generated: unit vectors whose variance decays as 1/i over a random
rotation of 384 dimensions (sentence embeddings are similarly anisotropic; on isotropic
noise, which has no principal directions, the narrow copy cannot work and recall drops to
about 0.5 — see docs/benchmarks.md). bench/memory.py measures the same on MiniLM vectors.
"""

from __future__ import annotations

import numpy as np
import pytest

from plugins.memory.index import COARSE_FROM, VectorIndex

DIM = 384
POOL = 64  # what MemoryService asks for when k=5 (max(64, 12 * k))


def anisotropic(rng: np.random.Generator, rotation: np.ndarray, m: int) -> np.ndarray:
    scales = (np.arange(DIM) + 1.0) ** -0.5
    x = ((rng.normal(size=(m, DIM)) * scales) @ rotation.T).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def filled() -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    rotation, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    n = COARSE_FROM + 1000
    vecs = anisotropic(rng, rotation, n)
    index = VectorIndex(DIM)
    for start in range(0, n, 5000):  # appended in batches, as the indexer does
        end = min(start + 5000, n)
        index.add(np.arange(start, end), vecs[start:end], 0.0, 0.0, 0, 0.5, 0.0, "episodic")
    return index, vecs, anisotropic(rng, rotation, 100)


def recall_at_5(index: VectorIndex, vecs: np.ndarray, queries: np.ndarray) -> float:
    hits = 0
    for q in queries:
        rows, sims, snap = index.search(q, POOL)
        got = set(snap["ids"][rows[np.argsort(-sims)[:5]]].tolist())
        exact = set(np.argsort(-(vecs @ q))[:5].tolist())
        hits += len(got & exact)
    return hits / (5 * len(queries))


def test_the_approximate_path_is_in_use(filled) -> None:
    index, _, _ = filled
    assert index.snapshot()["proj"] is not None, "past COARSE_FROM rows the index should keep its narrow copy"


def test_recall_at_5_of_the_approximate_index_is_at_least_095(filled) -> None:
    index, vecs, queries = filled
    assert recall_at_5(index, vecs, queries) >= 0.95


def test_archived_rows_never_come_back(filled) -> None:
    index, vecs, queries = filled
    q = queries[0]
    best = [int(i) for i in np.argsort(-(vecs @ q))[:5]]
    index.deactivate(best)
    try:
        rows, _, snap = index.search(q, POOL)
        assert not set(snap["ids"][rows].tolist()) & set(best)
    finally:
        with index.lock:
            index.active[[index.row_of[i] for i in best]] = True
