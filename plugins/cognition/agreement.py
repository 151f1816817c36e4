"""Comparing sampled answers: the final answer of each, how much two agree, clusters.

Used by self-consistency (majority answer) and anti-hallucination (agreement ->
confidence). An answer's *key* is what it concludes: the last number of its final line
when there is one, yes/no when it starts with it, else the content words of its first
sentence. Two keys agree fully when both are the same number or the same yes/no, and
otherwise by the overlap (Jaccard) of their words.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import combinations

_NUM = re.compile(r"-?\d+(?:[.,]\d+)?")
_WORD = re.compile(r"\w+", re.UNICODE)
_FINAL = re.compile(r"(?:final answer|answer|respuesta(?: final)?)\s*(?:is|es)?\s*[:=]?\s*(.+)", re.IGNORECASE)
_STOP = set("""a an the is are was were be of to in on at for and or it its this that there as by with from
i you he she we they my your his her our their so very just also then than which what who whom
el la los las un una es son era fue de del en y o que por para con su sus al lo se""".split())
_YES = {"yes", "yeah", "yep", "correct", "true", "si", "cierto", "verdadero"}
_NO = {"no", "nope", "false", "incorrect", "falso"}


def _plain(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def final_part(answer: str) -> str:
    """The concluding part: after "answer:" if present, else the last non-empty line."""
    text = (answer or "").strip()
    matches = list(_FINAL.finditer(text))
    if matches:
        return matches[-1].group(1).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def key(answer: str) -> tuple[str, object]:
    """("num", value) | ("bool", "yes"/"no") | ("words", frozenset)."""
    final = _plain(final_part(answer))
    words = _WORD.findall(final)
    if words and (words[0] in _YES or words[0] in _NO):
        return ("bool", "yes" if words[0] in _YES else "no")
    nums = _NUM.findall(final)
    if nums:
        raw = nums[-1].replace(",", ".")
        try:
            value = float(raw)
            return ("num", int(value) if value.is_integer() else round(value, 6))
        except ValueError:
            pass
    first = re.split(r"(?<=[.!?])\s", final, maxsplit=1)[0]
    content = frozenset(w for w in _WORD.findall(first) if w not in _STOP and len(w) > 1)
    return ("words", content)


def similarity(a: tuple[str, object], b: tuple[str, object]) -> float:
    if a[0] != b[0]:
        return 0.0
    if a[0] in ("num", "bool"):
        return 1.0 if a[1] == b[1] else 0.0
    sa, sb = a[1], b[1]
    assert isinstance(sa, frozenset) and isinstance(sb, frozenset)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / max(len(sa | sb), 1)


def clusters(answers: list[str], threshold: float = 0.5) -> list[list[int]]:
    """Indexes of answers grouped by agreement, largest group first (ties: earliest)."""
    keys = [key(a) for a in answers]
    groups: list[list[int]] = []
    for i, k in enumerate(keys):
        for g in groups:
            if similarity(keys[g[0]], k) >= threshold:
                g.append(i)
                break
        else:
            groups.append([i])
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def agreement(answers: list[str]) -> dict[str, float]:
    """Mean pairwise agreement, the majority's share, and a confidence from both (0..1)."""
    n = len(answers)
    if n < 2:
        return {"pairwise": 1.0, "majority": 1.0, "confidence": 1.0, "samples": n}
    keys = [key(a) for a in answers]
    pairs = [similarity(a, b) for a, b in combinations(keys, 2)]
    pairwise = sum(pairs) / len(pairs)
    majority = len(clusters(answers)[0]) / n
    return {"pairwise": round(pairwise, 3), "majority": round(majority, 3),
            "confidence": round(0.5 * pairwise + 0.5 * majority, 3), "samples": n}
