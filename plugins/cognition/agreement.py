"""Do sampled answers say the same thing? Semantic agreement, clusters and the features a
calibrated confidence is computed from.

An answer is reduced to what it concludes (``final_part``: after "answer:" or the last
line) and then to its *claims*: normalised numbers ("twelve", "12,000" and "12000" are the
same; a year is a number), yes/no, and named entities and content words (lower case,
accents stripped, a crude plural fold). Two answers:

- that both state numbers agree when they share the concluding number, and disagree
  otherwise ("1850" vs "12000"), however similar the sentences around them;
- that both name entities agree by the overlap of those entities ("Paris." and "The capital
  is Paris" agree fully; "Paris" and "Lyon" not at all);
- otherwise agree by the cosine of their sentence embeddings when an ``embed`` function is
  given (paraphrases), else by the overlap of their content words.

Used by self-consistency (the majority answer) and anti-hallucination (the confidence).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from itertools import combinations

Embed = Callable[[list[str]], list[list[float]]]

_NUM = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\w)|(?<![\w.])-?\d+(?:\.\d+)?(?!\w)")
_WORD = re.compile(r"\w+", re.UNICODE)
_FINAL = re.compile(r"(?:final answer|the answer|answer|respuesta(?: final)?)\s*(?:is|es)?\s*[:=]\s*(.+)|"
                    r"(?:final answer|the answer is|la respuesta es)\s+(.+)", re.IGNORECASE)
_STOP = set("""a an the is are was were be been of to in on at for and or it its this that there as by with from
i you he she we they my your his her our their so very just also then than which what who whom whose where when
how about approximately around roughly some any not no do does did has have had will would can could should
answer final think believe called named known people capital city country year number total
el la los las un una es son era fue de del en y o que por para con su sus al lo se como unos unas""".split())
_YES = {"yes", "yeah", "yep", "correct", "true", "si", "cierto", "verdadero"}
_NO = {"no", "nope", "false", "incorrect", "falso"}
NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
                "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
                "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
                "hundred": 100, "thousand": 1000, "cero": 0, "uno": 1, "una": 1, "dos": 2, "tres": 3,
                "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8, "nueve": 9, "diez": 10, "once": 11,
                "doce": 12, "veinte": 20, "cien": 100, "mil": 1000}


def plain(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def final_part(answer: str) -> str:
    """The concluding part: after "answer:" if present, else the last non-empty line."""
    text = (answer or "").strip()
    matches = list(_FINAL.finditer(text))
    if matches:
        last = matches[-1]
        return (last.group(1) or last.group(2) or "").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def numbers(text: str) -> list[float | int]:
    """Every number in ``text``, in order: digits (with thousands commas) and number words."""
    out: list[float | int] = []
    for m in re.finditer(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|[^\W\d_]+", plain(text)):
        tok = m.group(0)
        if tok in NUMBER_WORDS:
            out.append(NUMBER_WORDS[tok])
        elif tok[0].isdigit() or tok[0] == "-":
            try:
                value = float(tok.replace(",", ""))
            except ValueError:
                continue
            out.append(int(value) if value.is_integer() else round(value, 6))
    return out


def _fold(word: str) -> str:
    if len(word) > 4 and word.endswith("es") and not word.endswith("ses"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content(text: str) -> frozenset[str]:
    """Content words (no stop words, no numbers), folded."""
    return frozenset(_fold(w) for w in _WORD.findall(plain(text)) if w not in _STOP and not w.isdigit()
                     and w not in NUMBER_WORDS and len(w) > 1)


class Claims:
    """What an answer concludes, reduced for comparison."""

    __slots__ = ("final", "numbers", "polarity", "words")

    def __init__(self, answer: str, ignore: frozenset[str] = frozenset()) -> None:
        self.final = final_part(answer)
        first = plain(self.final).lstrip("¡¿ ")
        head = _WORD.findall(first)[:1]
        self.polarity = ("yes" if head[0] in _YES else "no") if head and (head[0] in _YES or head[0] in _NO) else None
        self.numbers = numbers(self.final)
        # Words the question already has ("France" in "Paris is the capital of France") are not
        # claims: without this "Paris..." and "Lyon is the capital of France" would half agree.
        self.words = content(self.final) - ignore


def key(answer: str) -> tuple[str, object]:
    """("num", last number) | ("bool", "yes"/"no") | ("words", content words): what it concludes."""
    c = Claims(answer)
    if c.polarity:
        return ("bool", c.polarity)
    if c.numbers:
        return ("num", c.numbers[-1])
    return ("words", c.words)


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)


def pair_similarity(a: Claims, b: Claims, cosine: float | None = None) -> float:
    """0..1: how far two answers' claims agree (see the module docstring for the rules)."""
    if a.polarity and b.polarity:
        return 1.0 if a.polarity == b.polarity else 0.0
    if a.numbers and b.numbers:
        if a.numbers[-1] == b.numbers[-1]:
            return 1.0
        return 0.5 if set(a.numbers) & set(b.numbers) else 0.0
    if a.words and b.words:
        overlap = len(a.words & b.words) / min(len(a.words), len(b.words))
        if overlap > 0:
            return overlap
        if cosine is None:
            return 0.0
        # Different content words can still be a paraphrase; embeddings decide, strictly:
        # MiniLM puts unrelated short answers around 0.2-0.4, paraphrases above 0.7.
        return min(1.0, max(0.0, (cosine - 0.55) / 0.3))
    if cosine is not None:
        return min(1.0, max(0.0, (cosine - 0.55) / 0.3))
    return 1.0 if not a.words and not b.words and not a.numbers and not b.numbers else 0.0


def similarity_matrix(answers: Sequence[str], embed: Embed | None = None, question: str = "") -> list[list[float]]:
    ignore = content(question)
    claims = [Claims(a, ignore) for a in answers]
    vecs = embed([c.final or a for c, a in zip(claims, answers, strict=True)]) if embed else None
    n = len(answers)
    sim = [[1.0] * n for _ in range(n)]
    for i, j in combinations(range(n), 2):
        cos = _cos(vecs[i], vecs[j]) if vecs is not None else None
        sim[i][j] = sim[j][i] = pair_similarity(claims[i], claims[j], cos)
    return sim


def clusters_from(sim: list[list[float]], threshold: float = 0.5) -> list[list[int]]:
    groups: list[list[int]] = []
    for i in range(len(sim)):
        for g in groups:
            if sim[g[0]][i] >= threshold:
                g.append(i)
                break
        else:
            groups.append([i])
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def clusters(answers: list[str], threshold: float = 0.5, embed: Embed | None = None,
             question: str = "") -> list[list[int]]:
    """Indexes of answers grouped by agreement, largest group first (ties: earliest)."""
    return clusters_from(similarity_matrix(answers, embed, question), threshold)


def agreement(answers: list[str], embed: Embed | None = None, main: int = 0, question: str = "") -> dict[str, float]:
    """Agreement figures for ``answers`` (``answers[main]`` is the one given to the user):

    - ``pairwise``: mean agreement over all pairs;
    - ``majority``: the largest cluster's share;
    - ``support``: how far the other answers agree with the main one;
    - ``clusters``: how many different answers there are, as a share of the samples;
    - ``confidence``: ``support`` and ``pairwise`` averaged (before calibration).
    """
    n = len(answers)
    if n < 2:
        return {"pairwise": 1.0, "majority": 1.0, "support": 1.0, "clusters": 1.0 / max(n, 1),
                "confidence": 1.0, "samples": n}
    sim = similarity_matrix(answers, embed, question)
    pairs = [sim[i][j] for i, j in combinations(range(n), 2)]
    pairwise = sum(pairs) / len(pairs)
    groups = clusters_from(sim)
    support = sum(sim[main][j] for j in range(n) if j != main) / (n - 1)
    return {"pairwise": round(pairwise, 3), "majority": round(len(groups[0]) / n, 3), "support": round(support, 3),
            "clusters": round(len(groups) / n, 3), "confidence": round(0.5 * support + 0.5 * pairwise, 3),
            "samples": n}


def contradicts(answer: str, fact: str, cosine: float | None = None) -> bool:
    """Whether ``answer`` states something other than ``fact`` about the same subject: the two
    share subject words (or embed close) but conclude different numbers or yes/no."""
    a, f = Claims(answer), Claims(fact)
    fact_words = content(fact)
    answer_words = content(answer)
    same_subject = len(fact_words & answer_words) >= 1 or (cosine is not None and cosine >= 0.6)
    if not same_subject:
        return False
    fact_numbers = numbers(fact)
    answer_numbers = numbers(answer)
    if fact_numbers and answer_numbers:
        return not set(fact_numbers) & set(answer_numbers)
    if a.polarity and f.polarity:
        return a.polarity != f.polarity
    return False
