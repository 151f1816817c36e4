"""Calibrated confidence that an answer is right, from how far sampled answers agree.

A logistic model over the agreement figures (``agreement.agreement``: support for the
answer given, pairwise agreement, the majority's share, how many different answers). Its
coefficients were fitted on the self-check calibration questions
(``data/selfcheck_dev.jsonl``) with the packaged model's answers, by
``bench/selfcheck.py --fit``; they are never fitted on the held-out questions. Without the
file the uncalibrated mean of support and pairwise agreement is used.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("data") / "selfcheck_calibration.json"
FEATURES = ("support", "pairwise", "majority", "clusters")


@functools.cache
def calibration() -> dict[str, Any] | None:
    if not PATH.is_file():
        return None
    return json.loads(PATH.read_text())


def vector(score: dict[str, float]) -> list[float]:
    return [float(score.get(f, 0.0)) for f in FEATURES]


def calibrated(score: dict[str, float], params: dict[str, Any] | None = None) -> float:
    """P(the answer is right) given the agreement ``score`` (0..1)."""
    params = params if params is not None else calibration()
    if not params:
        return float(score.get("confidence", 0.0))
    z = params["bias"] + sum(w * x for w, x in zip(params["weights"], vector(score), strict=True))
    return round(1.0 / (1.0 + math.exp(-z)), 3)


def fit(rows: list[tuple[dict[str, float], bool]], l2: float = 0.1, steps: int = 3000) -> dict[str, Any]:
    """Logistic regression (gradient descent, L2) of rightness on the agreement features."""
    w = [0.0] * len(FEATURES)
    b = 0.0
    n = len(rows)
    lr = 0.5
    for _ in range(steps):
        gw = [0.0] * len(w)
        gb = 0.0
        for score, right in rows:
            x = vector(score)
            p = 1.0 / (1.0 + math.exp(-(b + sum(wi * xi for wi, xi in zip(w, x, strict=True)))))
            err = p - (1.0 if right else 0.0)
            for k in range(len(w)):
                gw[k] += err * x[k] / n
            gb += err / n
        w = [wi - lr * (g + l2 * wi / n) for wi, g in zip(w, gw, strict=True)]
        b -= lr * gb
    return {"features": list(FEATURES), "weights": [round(x, 4) for x in w], "bias": round(b, 4)}


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
