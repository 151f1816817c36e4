"""How much reasoning a request needs: a small trained classifier, not a regex.

Two classes, ``simple`` (chat, a fact to look up, a task to carry out, feelings) and
``reasoning`` (several steps: arithmetic word problems, proofs, plans, trade-offs,
"explain why"). The model is the same kind as the emotion model (``textclf``: word and
character n-grams plus a few shape features: how many numbers, how long, how many
questions) and costs well under a millisecond. ``predict(text)`` is P(reasoning), the
request's difficulty in 0..1.

Training data (``python -m plugins.cognition.train difficulty``): the emotion training
set's messages and the self-check calibration questions as ``simple``, and
``data/difficulty_train.jsonl`` as ``reasoning`` (word problems generated from templates,
and written multi-step requests in English and Spanish). The word problems of the
reasoning benchmark are never used for training.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from .textclf import Features, LinearModel, ngram_features, normalise, words

CLASSES = ("simple", "reasoning")
DATA = Path(__file__).with_name("data")
MODEL_PATH = DATA / "difficulty_model.json.gz"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def features(text: str) -> Features:
    toks = words(text)
    feats = ngram_features(toks, char_range=(3, 4))
    n_numbers = len(_NUMBER.findall(text))
    feats[f"num:{min(n_numbers, 3)}"] = 1.0
    feats[f"len:{min(len(toks) // 10, 4)}"] = 1.0
    if text.count("?") > 1:
        feats["q:many"] = 1.0
    if re.search(r"\d\s*[-+*/^=x×÷]\s*\d", text):
        feats["math:op"] = 1.0
    return normalise(feats)


@functools.cache
def model() -> LinearModel:
    if not MODEL_PATH.is_file():
        raise FileNotFoundError(f"the difficulty model {MODEL_PATH} is missing; build it with "
                                "`python -m plugins.cognition.train difficulty`")
    return LinearModel.load(MODEL_PATH)


def predict(text: str) -> float:
    """P(the request needs several reasoning steps), 0..1."""
    return round(model().proba(features(text))["reasoning"], 3)


def train() -> LinearModel:
    from . import textclf
    from .train import load_jsonl, sha256

    simple = [r["text"] for r in load_jsonl(DATA / "emotion_train.jsonl")]
    simple += [r["question"] for r in load_jsonl(DATA / "selfcheck_dev.jsonl")]
    hard = [r["text"] for r in load_jsonl(DATA / "difficulty_train.jsonl")]
    texts = simple + hard
    labels = ["simple"] * len(simple) + ["reasoning"] * len(hard)
    feats = [features(t) for t in texts]
    oof: list[str] = [""] * len(texts)
    for fold in textclf.folds(len(texts), 5, seed=0):
        held = set(fold)
        idx = [i for i in range(len(texts)) if i not in held]
        m = textclf.train_softmax([feats[i] for i in idx], [labels[i] for i in idx], CLASSES, l2=1e-4, epochs=200)
        for i in fold:
            p = m.proba(feats[i], temperature=1.0)
            oof[i] = max(p, key=p.__getitem__)
    f1, per = textclf.macro_f1(labels, oof, CLASSES)
    print(f"  difficulty: cross-validated macro-F1 {f1:.3f} ({', '.join(f'{c} {v:.3f}' for c, v in per.items())})")
    meta = {"trained_on": ["emotion_train.jsonl", "selfcheck_dev.jsonl", "difficulty_train.jsonl"],
            "trained_sha256": sha256(DATA / "difficulty_train.jsonl"), "rows": len(texts), "temperature": 1.0,
            "cv": {"folds": 5, "macro_f1": round(f1, 4), "per_class_f1": {c: round(v, 3) for c, v in per.items()}}}
    return textclf.train_softmax(feats, labels, CLASSES, l2=1e-4, epochs=200, meta=meta)
