"""The intent model: multinomial logistic regression over hashed n-gram features (sparse)
and, optionally, a sentence embedding (dense), with a temperature for calibration.

Plain numpy: full-batch Adam on the L2-regularised cross-entropy (the problem is convex,
so a fixed number of steps from zero is deterministic and converges). Only hashed columns
seen in training get weights; the rest score zero. ``proba`` divides the logits by
``temperature`` before the softmax: the temperature is fitted on out-of-fold predictions
(``fit_temperature``) so that confidence means accuracy.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp

Sparse = list[tuple[np.ndarray, np.ndarray]]


class Batch:
    """Rows of sparse features as a CSR matrix, their columns remapped onto the model's
    (scipy's sparse products: training is ~15x faster than with numpy gathers)."""

    def __init__(self, rows: Sparse, columns: np.ndarray | None = None) -> None:
        lengths = np.fromiter((len(i) for i, _ in rows), dtype=np.int64, count=len(rows))
        idx = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int64)
        vals = np.concatenate([v for _, v in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
        row = np.repeat(np.arange(len(rows)), lengths)
        self.n = len(rows)
        if columns is None:  # training: the columns are the features seen
            self.columns, col = np.unique(idx, return_inverse=True)
        else:
            pos = np.minimum(np.searchsorted(columns, idx), max(len(columns) - 1, 0))
            known = columns[pos] == idx if len(columns) else np.zeros(len(idx), bool)
            self.columns = columns
            col, vals, row = pos[known], vals[known], row[known]
        # duplicate (row, column) pairs (two hashes colliding) are summed, as a dot product would
        self.matrix = sp.csr_matrix((vals, (row, col)), shape=(self.n, len(self.columns)), dtype=np.float32)
        self._transposed: sp.csr_matrix | None = None

    def dot(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix @ w, dtype=np.float32)

    def tdot(self, g: np.ndarray, n_cols: int) -> np.ndarray:
        """X^T g: per column, the sum of value * g[row]."""
        if self._transposed is None:
            self._transposed = self.matrix.T.tocsr()
        return np.asarray(self._transposed @ g, dtype=np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class IntentModel:
    def __init__(self, labels: list[str], *, l2: float = 1e-4, dense_weight: float = 1.0, steps: int = 150,
                 lr: float = 0.08) -> None:
        self.labels = list(labels)
        self.l2, self.dense_weight, self.steps, self.lr = l2, dense_weight, steps, lr
        self.temperature = 1.0
        self.source = ""  # how this process got it: trained now, or loaded from the cache (training.train)
        self.key = ""  # the fingerprint of what it was trained on
        self.columns = np.zeros(0, np.int64)
        self.ws = np.zeros((0, len(labels)), np.float32)
        self.wd: np.ndarray | None = None
        self.b = np.zeros(len(labels), np.float32)

    def fit(self, rows: Sparse, dense: np.ndarray | None, y: np.ndarray,
            weights: np.ndarray | None = None) -> IntentModel:
        batch = Batch(rows)
        self.columns = batch.columns
        k = len(self.labels)
        n = len(y)
        onehot = np.zeros((n, k), np.float32)
        onehot[np.arange(n), y] = 1.0
        sw = (np.ones(n, np.float32) if weights is None else weights.astype(np.float32))
        sw = sw / sw.sum()
        d = None if dense is None else (dense * self.dense_weight).astype(np.float32)
        params = {"ws": np.zeros((len(self.columns), k), np.float32), "b": np.zeros(k, np.float32)}
        if d is not None:
            params["wd"] = np.zeros((d.shape[1], k), np.float32)
        m = {key: np.zeros_like(v) for key, v in params.items()}
        v2 = {key: np.zeros_like(v) for key, v in params.items()}
        for t in range(1, self.steps + 1):
            z = batch.dot(params["ws"]) + params["b"]
            if d is not None:
                z += d @ params["wd"]
            g = (softmax(z) - onehot) * sw[:, None]
            grads = {"ws": batch.tdot(g, len(self.columns)) + self.l2 * params["ws"], "b": g.sum(0)}
            if d is not None:
                grads["wd"] = d.T @ g + self.l2 * params["wd"]
            lr = self.lr * min(1.0, t / 10)  # a short warm-up keeps the first steps from overshooting
            for key in params:
                m[key] = 0.9 * m[key] + 0.1 * grads[key]
                v2[key] = 0.999 * v2[key] + 0.001 * grads[key] ** 2
                mh = m[key] / (1 - 0.9 ** t)
                vh = v2[key] / (1 - 0.999 ** t)
                params[key] -= lr * mh / (np.sqrt(vh) + 1e-8)
        self.ws, self.b, self.wd = params["ws"], params["b"], params.get("wd")
        return self

    def logits(self, rows: Sparse, dense: np.ndarray | None) -> np.ndarray:
        z = Batch(rows, self.columns).dot(self.ws) + self.b
        if self.wd is not None and dense is not None:
            z += (dense * self.dense_weight).astype(np.float32) @ self.wd
        return z

    def proba(self, rows: Sparse, dense: np.ndarray | None, mask: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities; ``mask`` (n, k) of allowed labels renormalises over them."""
        z = self.logits(rows, dense) / self.temperature
        if mask is not None:
            z = np.where(mask, z, -1e9)
        return softmax(z)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of held-out logits."""
    best, best_t = np.inf, 1.0
    for t in np.exp(np.linspace(np.log(0.05), np.log(5.0), 120)):
        p = softmax(logits / t)
        nll = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| per equal-width bin, weighted."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (confidence > lo) & (confidence <= hi)
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(total)
