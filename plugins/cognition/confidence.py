"""Calibrated confidence that an answer is right, from how far sampled answers agree and
how sure the model was of the answer it gave.

A logistic model over features of the samples: the agreement figures
(``agreement.agreement``: support for the answer given, pairwise agreement, the majority's
share, how many different answers) and the model's token log-probabilities for the answer
given (``logprob_features``: mean, least likely token, first token), as drawn by
``Chat.sample``. Which features it uses, their coefficients and the standardisation are
in ``data/selfcheck_calibration.json``, fitted on the self-check calibration questions
(``data/selfcheck_dev.jsonl``) with the packaged model's answers by
``bench/selfcheck.py --fit`` (the feature set chosen by cross-validation on those
questions alone); never on the held-out questions. Without the file the uncalibrated mean
of support and pairwise agreement is used.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("data") / "selfcheck_calibration.json"
AGREEMENT = ("support", "pairwise", "majority", "clusters")
LOGPROB = ("mean_logprob", "min_logprob", "first_logprob")
#: the features a calibration may use; the calibration file lists the ones it does
FEATURES = AGREEMENT + LOGPROB


@functools.cache
def calibration() -> dict[str, Any] | None:
    if not PATH.is_file():
        return None
    return json.loads(PATH.read_text())


def logprob_features(logprobs: Sequence[float] | None) -> dict[str, float]:
    """The model's confidence in one answer from its tokens' log-probabilities (empty when
    the backend could not tell)."""
    if not logprobs:
        return {}
    return {"mean_logprob": sum(logprobs) / len(logprobs), "min_logprob": min(logprobs),
            "first_logprob": logprobs[0]}


def vector(score: dict[str, float], features: Sequence[str] = AGREEMENT,
           fill: dict[str, float] | None = None) -> list[float]:
    """The features in order; a missing one (no log-probabilities from this backend) takes
    ``fill``'s value, the calibration set's mean, so it moves the confidence neither way."""
    fill = fill or {}
    return [float(score[f]) if score.get(f) is not None else float(fill.get(f, 0.0)) for f in features]


def uses_logprobs(params: dict[str, Any] | None = None) -> bool:
    params = params if params is not None else calibration()
    return bool(params) and any(f in LOGPROB for f in params.get("features", AGREEMENT))


def calibrated(score: dict[str, float], params: dict[str, Any] | None = None) -> float:
    """P(the answer is right) given the samples' ``score`` (agreement and log-probability
    features; 0..1)."""
    params = params if params is not None else calibration()
    if not params:
        return float(score.get("confidence", 0.0))
    features = params.get("features", AGREEMENT)
    x = vector(score, features, params.get("center"))
    center = params.get("center") or {}
    scale = params.get("scale") or {}
    x = [(v - center.get(f, 0.0)) / (scale.get(f) or 1.0) for f, v in zip(features, x, strict=True)]
    z = params["bias"] + sum(w * v for w, v in zip(params["weights"], x, strict=True))
    return round(1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z)))), 3)


def fit(rows: list[tuple[dict[str, float], bool]], features: Sequence[str] = AGREEMENT,
        l2: float = 1.0) -> dict[str, Any]:
    """Logistic regression (L2 on the weights, Newton's method) of rightness on ``features``,
    standardised by the rows' own mean and spread (log-probabilities and shares live on
    different scales)."""
    features = list(features)
    raw = [vector(score, features) for score, _ in rows]
    n, d = len(rows), len(features)
    center = {f: sum(x[k] for x in raw) / n for k, f in enumerate(features)}
    scale = {f: math.sqrt(sum((x[k] - center[f]) ** 2 for x in raw) / n) or 1.0 for k, f in enumerate(features)}
    xs = [[1.0] + [(x[k] - center[f]) / scale[f] for k, f in enumerate(features)] for x in raw]
    ys = [1.0 if right else 0.0 for _, right in rows]
    beta = [0.0] * (d + 1)  # bias first
    for _ in range(25):
        grad = [0.0] * (d + 1)
        hess = [[0.0] * (d + 1) for _ in range(d + 1)]
        for x, y in zip(xs, ys, strict=True):
            p = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, sum(b * v for b, v in zip(beta, x, strict=True))))))
            for i in range(d + 1):
                grad[i] += (p - y) * x[i]
                for j in range(i, d + 1):
                    hess[i][j] += p * (1 - p) * x[i] * x[j]
        for i in range(1, d + 1):  # the penalty (not on the bias)
            grad[i] += l2 * beta[i]
            hess[i][i] += l2
        for i in range(d + 1):
            for j in range(i):
                hess[i][j] = hess[j][i]
        step = _solve(hess, grad)
        beta = [b - s for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < 1e-7:
            break
    return {"features": features, "weights": [round(x, 4) for x in beta[1:]], "bias": round(beta[0], 4),
            "center": {f: round(v, 4) for f, v in center.items()},
            "scale": {f: round(v, 4) for f, v in scale.items()}}


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """``a x = b`` by Gaussian elimination with partial pivoting (a few unknowns)."""
    m = [[*row, v] for row, v in zip(a, b, strict=True)]
    size = len(b)
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        if abs(m[col][col]) < 1e-12:
            continue
        for r in range(col + 1, size):
            f = m[r][col] / m[col][col]
            for c in range(col, size + 1):
                m[r][c] -= f * m[col][c]
    x = [0.0] * size
    for r in range(size - 1, -1, -1):
        if abs(m[r][r]) < 1e-12:
            continue
        x[r] = (m[r][size] - sum(m[r][c] * x[c] for c in range(r + 1, size))) / m[r][r]
    return x


def auroc(scores: list[float], labels: list[bool]) -> float:
    """Area under the ROC curve: P(a right answer scores above a wrong one), ties half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = 0.0
    for p in pos:
        for q in neg:
            wins += 1.0 if p > q else 0.5 if p == q else 0.0
    return wins / (len(pos) * len(neg))
