"""Emotion from the user's words: Plutchik's eight basic emotions and a
pleasure-arousal-dominance (PAD) point, by an English + Spanish lexicon.

Why a lexicon: it costs microseconds, needs no model, is the same in every run, and is
good enough to set the tone of an answer and the strength of a memory. It handles
negation ("not happy", "no estoy contento" flips towards the opposite emotion),
intensifiers ("very", "muy", "so"), exclamation marks and shouting (arousal), and a few
emoji.

Output (``turn.metadata["emotion"]``)::

    {"emotions": {"joy": 0.8, ...}, "dominant": "joy", "intensity": 0.8,
     "pad": {"pleasure": 0.6, "arousal": 0.5, "dominance": 0.3}, "language": "en"}
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

EMOTIONS = ("joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation")
OPPOSITE = {"joy": "sadness", "sadness": "joy", "trust": "disgust", "disgust": "trust", "fear": "anger",
            "anger": "fear", "surprise": "anticipation", "anticipation": "surprise"}
# Each emotion's place in PAD space (after Mehrabian and Russell's ratings of the terms).
PAD = {"joy": (0.76, 0.48, 0.35), "trust": (0.58, -0.1, 0.3), "fear": (-0.64, 0.6, -0.43),
       "surprise": (0.2, 0.7, -0.1), "sadness": (-0.63, -0.27, -0.33), "disgust": (-0.6, 0.35, 0.11),
       "anger": (-0.51, 0.59, 0.25), "anticipation": (0.3, 0.4, 0.2)}

# Words ending in "*" match as prefixes. Accents are stripped before matching.
LEXICON: dict[str, str] = {}
_WORDS = {
    "joy": """happy happier happiest glad joy joyful delighted delight* love loved lovely wonderful great awesome
        amazing fantastic excellent cheerful thrilled pleased enjoy* fun yay celebrate* smile* laugh* grateful
        thankful blessed proud
        feliz felices alegre alegria content* encant* maravillos* genial estupend* fantastic* disfrut* divert*
        sonri* rei* celebr* orgullos* agradecid* gracias fenomenal""",
    "trust": """trust* reliable rely honest safe secure confident faith believe* loyal depend* sure certain
        support* agree* respect*
        confi* fiabl* honest* segur* cre* leal apoy* respet* acuerdo""",
    "fear": """afraid scared fear* frighten* terrified terror panic* anxious anxiety nervous worried worry
        worrying dread* horrified horror nightmare alarm* threat* danger* unsafe insecure
        miedo asustad* aterr* panico ansios* ansiedad nervios* preocup* temor terror pesadilla peligr*
        insegur* alarm* amenaz*""",
    "surprise": """surprise* surprising surprised shock* astonish* amazed unexpected* suddenly wow whoa
        unbelievable incredible stunned omg
        sorpres* asombr* inesperad* repente increible impactad* guau vaya""",
    "sadness": """sad sadder saddest unhappy depressed depressing depression miserable lonely alone cry* crying
        tears heartbroken grief griev* sorrow* hopeless down gloomy lost loss miss missing hurt* pain* disappoint*
        tired exhausted
        triste tristeza infeliz deprimid* depresion miserabl* sol* llor* lagrima* desconsolad* duelo
        pena desesperanz* perdid* extran* echo dolor dolid* decepcion* cansad* agotad*""",
    "disgust": """disgust* gross nasty revolting repuls* sick* vile awful horrible yuck eww hate* hateful
        asco asquer* repugnant* nause* vomit* horribl* odi* detest* asqueros*""",
    "anger": """angry anger mad furious rage* annoy* irritat* frustrat* outrage* hate* pissed livid resent*
        hostile damn stupid ridiculous unacceptable fed
        enfad* enoj* furios* rabia ira molest* irrit* frustr* indign* cabread* harto harta odio maldit*
        estupid* ridicul* inaceptable""",
    "anticipation": """hope* hoping expect* anticipat* excited eager plan* soon tomorrow
        waiting await* curious ready prepar*
        esper* ilusion* dese* ganas emocionad* ansios* pronto manana planific* prepar* curios* listo lista""",
}
for _emo, _blob in _WORDS.items():
    for _w in _blob.split():
        LEXICON.setdefault(_w, _emo)
_PREFIXES = sorted(((w[:-1], e) for w, e in LEXICON.items() if w.endswith("*")), key=lambda p: -len(p[0]))
_EXACT = {w: e for w, e in LEXICON.items() if not w.endswith("*")}

NEGATIONS = {"not", "no", "never", "dont", "don't", "isnt", "isn't", "wasnt", "wasn't", "cant", "can't", "nothing",
             "nunca", "jamas", "ni", "tampoco", "nada", "sin"}
INTENSIFIERS = {"very": 1.6, "really": 1.5, "so": 1.5, "extremely": 1.9, "totally": 1.6, "super": 1.6,
                "incredibly": 1.8, "deeply": 1.6, "completely": 1.6, "absolutely": 1.7, "quite": 1.2, "bit": 0.6,
                "slightly": 0.6, "muy": 1.6, "tan": 1.5, "realmente": 1.5, "bastante": 1.3,
                "demasiado": 1.7, "extremadamente": 1.9, "poco": 0.6, "algo": 0.7, "totalmente": 1.6}
EMOJI = {"😀": "joy", "😃": "joy", "😄": "joy", "😊": "joy", "🙂": "joy", "😍": "joy", "❤": "joy", "🎉": "joy",
         "😢": "sadness", "😭": "sadness", "☹": "sadness", "🙁": "sadness", "😡": "anger", "😠": "anger",
         "🤬": "anger", "😱": "fear", "😨": "fear", "😰": "fear", "😮": "surprise", "😲": "surprise",
         "🤢": "disgust", "🤮": "disgust", "🤞": "anticipation"}
_SPANISH_HINTS = {"el", "la", "que", "de", "y", "estoy", "muy", "pero", "por", "mi", "es", "me", "no", "una", "con",
                  "para", "tengo", "esta", "los", "las", "hoy"}
_WORD = re.compile(r"[\w']+", re.UNICODE)


def _plain(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _lookup(word: str) -> str | None:
    hit = _EXACT.get(word)
    if hit:
        return hit
    if len(word) < 4:
        return None
    for prefix, emo in _PREFIXES:
        if word.startswith(prefix) and len(prefix) >= 3:
            return emo
    return None


def detect(text: str) -> dict[str, Any]:
    """Plutchik scores (0..1), the dominant emotion, intensity and PAD for ``text``."""
    raw = text or ""
    words = _WORD.findall(_plain(raw.lower()))
    scores = dict.fromkeys(EMOTIONS, 0.0)
    hits = 0
    for i, w in enumerate(words):
        emo = _lookup(w)
        if emo is None:
            continue
        window = words[max(0, i - 3): i]
        weight = 1.0
        for prev in window:
            weight *= INTENSIFIERS.get(prev, 1.0)
        if any(p in NEGATIONS for p in window):
            emo, weight = OPPOSITE[emo], weight * 0.6  # "not happy" is sad-ish, but weaker
        scores[emo] += weight
        hits += 1
    for ch in raw:
        if ch in EMOJI:
            scores[EMOJI[ch]] += 1.0
            hits += 1
    exclaims = min(raw.count("!"), 5)
    letters = [c for c in raw if c.isalpha()]
    shouting = len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.7
    total = sum(scores.values())
    language = "es" if sum(w in _SPANISH_HINTS for w in words) > max(1, len(words) // 8) or "¿" in raw or "¡" in raw \
        else "en"
    if total == 0:
        return {"emotions": scores, "dominant": "neutral", "intensity": 0.0,
                "pad": {"pleasure": 0.0, "arousal": round(min(0.1 * exclaims, 0.5), 3), "dominance": 0.0},
                "language": language, "matches": 0}
    # Intensity: how much emotional language there is, relative to the message's length.
    density = total / max(len(words), 1)
    intensity = min(1.0, 0.35 + 1.8 * density + 0.08 * exclaims + (0.2 if shouting else 0.0))
    norm = {e: round(s / total, 3) for e, s in scores.items()}
    dominant = max(norm, key=lambda e: norm[e])
    pad = [sum(norm[e] * PAD[e][k] for e in EMOTIONS) for k in range(3)]
    arousal = min(1.0, pad[1] * intensity + 0.08 * exclaims + (0.2 if shouting else 0.0))
    return {"emotions": {e: round(norm[e] * intensity, 3) for e in EMOTIONS}, "dominant": dominant,
            "intensity": round(intensity, 3),
            "pad": {"pleasure": round(pad[0] * intensity, 3), "arousal": round(arousal, 3),
                    "dominance": round(pad[2] * intensity, 3)},
            "language": language, "matches": hits}


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


def tone_instruction(result: dict[str, Any], threshold: float = 0.45) -> str | None:
    """One style line for the coordinator, or None when the message is emotionally flat."""
    if result["dominant"] == "neutral" or result["intensity"] < threshold:
        return None
    return TONE[result["dominant"]]
