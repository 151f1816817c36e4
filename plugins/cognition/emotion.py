"""Emotion from the user's words: Plutchik's eight basic emotions or ``neutral``, an
intensity and a pleasure-arousal-dominance (PAD) point, English and Spanish.

The judgement is a trained linear model (``textclf``) over word and character n-grams,
the lexicon's hits (with negation: "not happy" is a different feature from "happy"),
punctuation, shouting and emoji. It was trained on ``data/emotion_train.jsonl`` and is
measured on the frozen ``data/emotion_heldout.jsonl`` by ``bench/emotion.py``; see
docs/cognition.md. Inference is pure Python (a few hundred dictionary lookups, well under
a millisecond); the weights ship in ``data/emotion_model.json.gz`` (rebuild them with
``python -m plugins.cognition.train emotion``).

Two calibrated numbers come with the model (fitted by cross-validation on the training
set, never on the held-out set): ``threshold``, the probability an emotion needs before
the message reads as emotional at all (below it the message is ``neutral``, so a task
request such as "Sure, what is 2+2?" is not read as trust), and ``temperature``, which
makes the probabilities honest. The reply's tone changes only when the message reads as
emotional *and* its intensity reaches ``tone_threshold``.

Output (``turn.metadata["emotion"]``)::

    {"dominant": "fear", "confidence": 0.81, "intensity": 0.74,
     "emotions": {"joy": 0.01, ..., "neutral": 0.05},
     "pad": {"pleasure": -0.45, "arousal": 0.44, "dominance": -0.3}, "language": "en"}
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from . import lexicon
from .textclf import Features, LinearModel, ngram_features, normalise, words

EMOTIONS = ("joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation")
CLASSES = (*EMOTIONS, "neutral")
# Each emotion's place in PAD space (after Mehrabian and Russell's ratings of the terms).
PAD = {"joy": (0.76, 0.48, 0.35), "trust": (0.58, -0.1, 0.3), "fear": (-0.64, 0.6, -0.43),
       "surprise": (0.2, 0.7, -0.1), "sadness": (-0.63, -0.27, -0.33), "disgust": (-0.6, 0.35, 0.11),
       "anger": (-0.51, 0.59, 0.25), "anticipation": (0.3, 0.4, 0.2)}
MODEL_PATH = Path(__file__).with_name("data") / "emotion_model.json.gz"
# The same model with the message's sentence embedding (the pool's embed model,
# all-MiniLM-L6-v2) as 384 more features: it generalises to words the training set never
# showed. Used with ``[plugin.cognition.emotion] use_embeddings = true`` when the pool has an
# embed model; else the text-only one.
SEMANTIC_MODEL_PATH = Path(__file__).with_name("data") / "emotion_model_minilm.json.gz"
# How much a lexicon hit counts against the ~100 n-grams of a message. Chosen by 5-fold
# cross-validation on the training set among 1, 2 and 3: heavier hits read plain
# statements ("I am so angry") better but make task requests with emotion words ("write a
# happy birthday message") read as emotional, and under the 4% constraint on those the
# macro-F1 was 0.618 / 0.583 / 0.541.
LEXICON_WEIGHT = 1.0


def features(text: str, vector: list[float] | None = None) -> Features:
    """What the model sees in ``text``: n-grams, lexicon hits (negated or not), punctuation, emoji,
    and, for the semantic model, the sentence embedding ``vector``."""
    raw = text or ""
    toks = words(raw)
    feats = ngram_features(toks)
    for i, w in enumerate(toks):
        emo = lexicon.lookup(w)
        if emo is None:
            continue
        negated = any(p in lexicon.NEGATIONS for p in toks[max(0, i - 3):i])
        key = f"lex{'neg' if negated else ''}:{emo}"
        feats[key] = feats.get(key, 0.0) + LEXICON_WEIGHT
    for ch in raw:
        if ch in lexicon.EMOJI:
            feats["emoji:" + lexicon.EMOJI[ch]] = LEXICON_WEIGHT
    bangs = raw.count("!")
    if bangs:
        feats["p:!"] = 1.0
        if bangs >= 2:
            feats["p:!!"] = 1.0
    stripped = raw.rstrip()
    if stripped.endswith("?"):
        feats["p:?end"] = 1.0
    if "?!" in raw or "!?" in raw or "??" in raw:
        feats["p:?!"] = 1.0
    if "..." in raw or "…" in raw:
        feats["p:..."] = 1.0
    if _shouting(raw):
        feats["p:caps"] = 1.0
    if len(toks) <= 3:
        feats["len:short"] = 1.0
    feats = normalise(feats)
    if vector is not None:
        for i, x in enumerate(vector):
            feats[f"e{i}"] = float(x)
    return feats


def _shouting(raw: str) -> bool:
    caps_words = [w for w in raw.split() if len(w) >= 3 and w.isalpha() and w.isupper()]
    return bool(caps_words)


@functools.cache
def model(semantic: bool = False) -> LinearModel:
    if semantic and not SEMANTIC_MODEL_PATH.is_file():
        return model(False)  # not built: the text-only model judges
    path = SEMANTIC_MODEL_PATH if semantic else MODEL_PATH
    if not path.is_file():
        raise FileNotFoundError(f"the emotion model {path} is missing; build it with "
                                f"`python -m plugins.cognition.train emotion{'-semantic' if semantic else ''}`")
    return LinearModel.load(path)


def language(text: str) -> str:
    toks = words(text)
    hits = sum(w in lexicon.SPANISH_HINTS for w in toks)
    return "es" if hits > max(1, len(toks) // 8) or "¿" in text or "¡" in text else "en"


def intensity_boost(text: str) -> float:
    """How much intensifiers, exclamation marks and shouting raise intensity (1.0 = none)."""
    toks = words(text)
    boost = 1.0
    for w in toks:
        factor = lexicon.INTENSIFIERS.get(w)
        if factor:
            boost *= factor ** 0.5  # "very" strengthens; "a bit" (0.6) weakens
    boost *= 1.0 + 0.06 * min(text.count("!"), 4)
    if _shouting(text):
        boost *= 1.2
    return min(max(boost, 0.5), 1.6)


def classify(text: str, clf: LinearModel | None = None, threshold: float | None = None,
             vector: list[float] | None = None) -> tuple[str, dict[str, float]]:
    """The label (an emotion only when its probability reaches ``threshold``) and all probabilities."""
    clf = clf or model(semantic=vector is not None)
    probs = clf.proba(features(text, vector if clf.meta.get("embedding") else None))
    cut = float(clf.meta.get("threshold", 0.0)) if threshold is None else threshold
    label = max(probs, key=probs.__getitem__)
    if label != "neutral" and probs[label] < cut:
        label = "neutral"
    return label, probs


def detect(text: str, clf: LinearModel | None = None, vector: list[float] | None = None) -> dict[str, Any]:
    """Dominant emotion (or neutral), its confidence, intensity, PAD and language for ``text``;
    with ``vector`` (its MiniLM embedding) the semantic model judges."""
    clf = clf or model(semantic=vector is not None)
    label, probs = classify(text, clf, vector=vector)
    emotional = 1.0 - probs["neutral"]
    if label == "neutral":
        intensity = 0.0
    else:
        intensity = min(1.0, probs[label] * intensity_boost(text))
    share = {e: probs[e] / emotional if emotional > 0 else 0.0 for e in EMOTIONS}
    pad = [sum(share[e] * PAD[e][k] for e in EMOTIONS) * intensity for k in range(3)]
    return {"dominant": label, "confidence": round(probs[label], 3), "intensity": round(intensity, 3),
            "emotions": {c: round(p, 3) for c, p in probs.items()},
            "pad": {"pleasure": round(pad[0], 3), "arousal": round(pad[1], 3), "dominance": round(pad[2], 3)},
            "language": language(text), "model": "minilm" if clf.meta.get("embedding") else "text",
            "tone_threshold": float(clf.meta.get("tone_threshold", 0.5))}


TONE = {
    "joy": "The user sounds happy: share their enthusiasm briefly.",
    "trust": "The user is confiding in you: be reliable and straightforward.",
    "fear": "The user sounds worried or afraid: be calm and reassuring, give clear concrete steps.",
    "surprise": "The user is surprised: acknowledge it and explain clearly.",
    "sadness": "The user sounds sad: be warm and gentle, acknowledge their feelings before giving advice.",
    "disgust": "The user is put off by something: acknowledge it without judgement.",
    "anger": "The user sounds frustrated or angry: stay calm, do not be defensive, get straight to a fix.",
    "anticipation": "The user is looking forward to something: be encouraging and practical.",
}


def tone_instruction(result: dict[str, Any], threshold: float | None = None) -> str | None:
    """One style line for the coordinator, or None when the message does not read as emotional
    enough (``threshold``: the intensity needed; default: the model's calibrated one)."""
    if threshold is None:
        threshold = float(result.get("tone_threshold", model().meta.get("tone_threshold", 0.5)))
    if result["dominant"] == "neutral" or result["intensity"] < threshold:
        return None
    return TONE[result["dominant"]]
