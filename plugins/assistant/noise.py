"""Training-time noise: the router learns each corpus clause again as people mistype or say it.

``noisy(text, rng)`` applies one or two of: a typo in a word (a letter dropped, two
swapped, one doubled, a neighbouring key), accents dropped, everything lower case with no
punctuation, a spoken filler in front ("uh", "pues", "alors"...), a word left out. Only
plain words change: quoted payloads, code, URLs and paths keep their shape, so their
placeholders (features.normalise) still apply. The generator is seeded per clause, so the
augmented corpus, and with it the trained model's cache key, is the same on every start.
"""

from __future__ import annotations

import random
import re
import zlib

from .features import strip_accents

_WORD = re.compile(r"^[^\W\d_]+[.,!?;:]?$")  # a plain word, maybe with trailing punctuation
# Neighbouring keys on a QWERTY keyboard, for a slipped finger.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEAR = {c: "".join(r[j] for j in (i - 1, i + 1) if 0 <= j < len(r)) for r in _ROWS for i, c in enumerate(r)}
FILLERS = ("uh ", "um ", "so ", "ok so ", "hey ", "eh ", "pues ", "bueno ", "alors ", "euh ", "also ", "ähm ",
           "allora ", "então ", "like ", "hmm ")


def rng_for(text: str, salt: int = 0) -> random.Random:
    return random.Random(zlib.crc32(text.encode()) ^ salt)


def typo(word: str, rng: random.Random) -> str:
    if not word:
        return word
    core, tail = (word[:-1], word[-1]) if not word[-1].isalpha() else (word, "")
    if len(core) < 4:
        return word
    w = list(core)
    j = rng.randrange(1, len(w) - 1)
    op = rng.random()
    if op < 0.3:
        w[j], w[j + 1] = w[j + 1], w[j]
    elif op < 0.6:
        del w[j]
    elif op < 0.8:
        w.insert(j, w[j])
    else:
        w[j] = rng.choice(_NEAR.get(w[j].lower(), "e") or "e")
    return "".join(w) + tail


def noisy(text: str, rng: random.Random) -> str:
    """A noisy version of ``text`` (the same text only when nothing in it can change)."""
    for _ in range(3):
        out = _once(text, rng)
        if out != text:
            return out
    return text


def _once(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    plain = [i for i, w in enumerate(words) if _WORD.match(w)]
    ops = rng.sample(("typo", "typo", "accents", "flat", "filler", "drop"), k=rng.choice((1, 1, 2)))
    for op in ops:
        if op == "typo" and plain:
            for i in rng.sample(plain, k=min(len(plain), rng.choice((1, 1, 2)))):
                words[i] = typo(words[i], rng)
        elif op == "accents":
            words = [strip_accents(w) if k in plain else w for k, w in enumerate(words)]
        elif op == "flat":
            words = [re.sub(r"[.,!?¡¿;:]+$", "", w.lower()) if k in plain else w for k, w in enumerate(words)]
        elif op == "filler":
            words[0] = rng.choice(FILLERS) + (words[0][:1].lower() + words[0][1:] if words[0] else "")
        elif op == "drop" and len(plain) > 3:
            words[rng.choice(plain[1:])] = ""  # never the first word: often the verb that decides
    return " ".join(w for w in words if w)
