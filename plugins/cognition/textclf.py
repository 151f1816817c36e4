"""Small linear text classifiers: sparse n-gram features, a softmax over classes, pure-Python
inference from a gzipped JSON weight file, numpy training.

Why this shape: the cognition stages run on every turn, so a judgement (which emotion,
how hard a request is) must cost well under a millisecond with no model to load and no
numpy at import time. A multinomial logistic regression over word and character n-grams
does that, handles Spanish morphology through the character n-grams, and its
probabilities can be calibrated (``train.py`` fits them; benches measure them).

Feature names are strings (``"w:happy"``, ``"c:ppy"``, ``"lex:joy"``); a model keeps
only the features it saw at least ``min_df`` times, so unseen ones simply do not vote.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

_WORD = re.compile(r"[\w']+", re.UNICODE)

Features = dict[str, float]


def plain(text: str) -> str:
    """Lower case without accents ("Qué" -> "que"), so the two spellings share features."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    return _WORD.findall(plain(text))


def ngram_features(toks: Sequence[str], *, char_range: tuple[int, int] = (3, 5)) -> Features:
    """Word unigrams and bigrams, and character n-grams inside each padded word."""
    feats: Features = {}
    for i, w in enumerate(toks):
        feats["w:" + w] = 1.0
        if i:
            feats[f"b:{toks[i - 1]}_{w}"] = 1.0
        padded = f"<{w}>"
        lo, hi = char_range
        for n in range(lo, hi + 1):
            for j in range(len(padded) - n + 1):
                feats["c:" + padded[j:j + n]] = 1.0
    if toks:
        feats["f:" + toks[0]] = 1.0  # the first word tells requests ("write", "explain") from statements
    return feats


def normalise(feats: Features) -> Features:
    norm = math.sqrt(sum(v * v for v in feats.values())) or 1.0
    return {k: v / norm for k, v in feats.items()}


class LinearModel:
    """``classes``, a bias per class and, per feature, one weight per class."""

    def __init__(self, classes: list[str], bias: list[float], weights: dict[str, list[float]],
                 meta: dict[str, Any] | None = None) -> None:
        self.classes = classes
        self.bias = bias
        self.weights = weights
        self.meta = meta or {}

    def scores(self, feats: Features) -> list[float]:
        out = list(self.bias)
        n = len(out)
        for name, value in feats.items():
            row = self.weights.get(name)
            if row is not None:
                for k in range(n):
                    out[k] += value * row[k]
        return out

    def proba(self, feats: Features, temperature: float | None = None) -> dict[str, float]:
        """Class probabilities; ``temperature`` (default: the calibrated one in ``meta``) softens them."""
        t = temperature if temperature is not None else float(self.meta.get("temperature", 1.0))
        s = [x / t for x in self.scores(feats)]
        top = max(s)
        exp = [math.exp(x - top) for x in s]
        total = sum(exp)
        return {c: e / total for c, e in zip(self.classes, exp, strict=True)}

    # -- files -------------------------------------------------------------------------

    def save(self, path: Path, digits: int = 4) -> None:
        """Gzipped JSON; weights rounded (``digits``) and zero rows dropped, to keep the file small."""
        rows = {k: [round(x, digits) for x in v] for k, v in sorted(self.weights.items())}
        rows = {k: v for k, v in rows.items() if any(v)}
        doc = {"classes": self.classes, "bias": [round(b, digits) for b in self.bias], "meta": self.meta,
               "weights": rows}
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        doc = json.loads(gzip.decompress(path.read_bytes()))
        return cls(doc["classes"], doc["bias"], doc["weights"], doc.get("meta"))


# --- training (numpy, imported here only) ------------------------------------------------


def train_softmax(rows: Sequence[Features], labels: Sequence[str], classes: Sequence[str], *, l2: float = 1e-3,
                  min_df: int = 2, epochs: int = 300, lr: float = 0.5, balanced: bool = True,
                  meta: dict[str, Any] | None = None) -> LinearModel:
    """Multinomial logistic regression by full-batch Adam on sparse rows (deterministic)."""
    import numpy as np

    df: dict[str, int] = {}
    for feats in rows:
        for name in feats:
            df[name] = df.get(name, 0) + 1
    vocab = {name: i for i, name in enumerate(sorted(n for n, c in df.items() if c >= min_df))}
    indptr, indices, data = [0], [], []
    for feats in rows:
        for name, value in feats.items():
            j = vocab.get(name)
            if j is not None:
                indices.append(j)
                data.append(value)
        indptr.append(len(indices))
    idx = np.asarray(indices, dtype=np.int64)
    val = np.asarray(data, dtype=np.float64)
    row_of = np.repeat(np.arange(len(rows)), np.diff(indptr))
    cls_index = {c: k for k, c in enumerate(classes)}
    y = np.asarray([cls_index[lab] for lab in labels])
    n, d, c = len(rows), len(vocab), len(classes)
    onehot = np.zeros((n, c))
    onehot[np.arange(n), y] = 1.0
    counts = np.bincount(y, minlength=c).astype(float)
    sample_w = (n / (c * np.maximum(counts, 1.0)))[y] if balanced else np.ones(n)
    sample_w = sample_w / sample_w.sum()

    w = np.zeros((d, c))
    b = np.zeros(c)
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, epochs + 1):
        contrib = w[idx] * val[:, None]
        # bincount per class: far faster than np.add.at for scatter-adds
        logits = np.stack([np.bincount(row_of, weights=contrib[:, k], minlength=n) for k in range(c)], axis=1)
        logits += b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        err = (p - onehot) * sample_w[:, None]
        per_entry = err[row_of] * val[:, None]
        g_w = np.stack([np.bincount(idx, weights=per_entry[:, k], minlength=d) for k in range(c)], axis=1)
        g_w += l2 * w
        g_b = err.sum(axis=0)
        for g, m, v, param in ((g_w, m_w, v_w, w), (g_b, m_b, v_b, b)):
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            param -= lr * (m / (1 - beta1 ** step)) / (np.sqrt(v / (1 - beta2 ** step)) + eps)
    names = sorted(vocab, key=vocab.__getitem__)
    weights = {name: w[j].tolist() for j, name in enumerate(names)}
    return LinearModel(list(classes), b.tolist(), weights, meta)


def fit_temperature(probs_logits: Iterable[tuple[list[float], int]]) -> float:
    """The temperature that minimises the negative log-likelihood of held-back predictions."""
    pairs = list(probs_logits)
    best, best_nll = 1.0, float("inf")
    for t in [0.1 + 0.05 * i for i in range(60)]:
        nll = 0.0
        for scores, y in pairs:
            s = [x / t for x in scores]
            top = max(s)
            z = math.log(sum(math.exp(x - top) for x in s)) + top
            nll += z - s[y]
        if nll < best_nll:
            best, best_nll = t, nll
    return round(best, 3)


def folds(n: int, k: int, seed: int = 0) -> list[list[int]]:
    """``k`` disjoint index lists covering ``range(n)``, shuffled with ``seed``."""
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i::k] for i in range(k)]


def macro_f1(gold: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> tuple[float, dict[str, float]]:
    per = {}
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p != c)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        per[c] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return sum(per.values()) / len(per), per


FeatureFn = Callable[[str], Features]
