"""What the intent model sees of a clause: hashed character and word n-grams, context
tokens (attachment kinds, first clause or follow-up), and optionally a sentence embedding.

Character n-grams (2 to 5 characters, inside word boundaries, on a lower-cased copy with
accents stripped) carry typos, inflections and the six languages without a dictionary;
word unigrams and bigrams carry phrasing. Everything is hashed into ``DIM`` buckets, so
a new plugin's examples need no vocabulary rebuild. Code spans, URLs, file paths, numbers
and quoted payloads are replaced by placeholder tokens: "explain `x = 1`" and "explain
`ls -la`" are the same request, and a sentence to be spoken or typed is not evidence of
what to do with it.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import zlib

import numpy as np

DIM = 1 << 18
NGRAMS = (3, 4)
_CODE = re.compile(r"`[^`]{1,400}`")
_URL = re.compile(r"\b(?:https?://\S+|www\.\S+|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|dev|ai|es|de|fr|it|pt|"
                  r"uk|gov|edu|co|info|news|app)\b(?:/\S*)?)", re.I)
#: the file types a request may name for the coder (source, notebooks, config, templates)
SOURCE_EXTS = ("py|js|jsx|ts|tsx|rs|go|java|kt|c|h|cc|cpp|hpp|cs|rb|php|swift|sql|sh|ps1|html|css|scss|vue|svelte|"
               "json|ya?ml|toml|ini|cfg|conf|properties|xml|j2|lua|dart|ipynb|ino|R|Rmd|jl|scala|md|txt|gradle")
_PATH = re.compile(rf"(?:[\w.-]*/)*[\w-]+(?:\.[\w-]+)*\.(?:{SOURCE_EXTS})\b|\b(?:Makefile|Dockerfile|Jenkinsfile)\b")
_QUOTE = re.compile(r"(?<![\w])[\"“«‘']([^\"”»’']{2,400})[\"”»’'](?![\w])")
_NUM = re.compile(r"\d+")


def strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def normalise(text: str) -> str:
    """Lower case, no accents, placeholders for code, URLs, paths, quotes and numbers."""
    s = _CODE.sub(" zcodez ", text)
    s = _URL.sub(" zurlz ", s)
    s = _PATH.sub(" zpathz ", s)
    s = _QUOTE.sub(" zquotez ", s)
    s = strip_accents(s.lower().replace("’", "'"))
    s = _NUM.sub("0", s)
    return " ".join(re.findall(r"[a-z0-9+#]+|[?:]", s))


# Words that make a question time-sensitive in the languages people write to the router: what
# is true now (today, tonight, the latest, still open, the current price, the score, the
# weather) needs a search; what is always true is chat. One shared feature for all of them
# lets a cue the corpus rarely pairs with a search ("ahorita", "stasera") borrow the evidence
# of the common ones. Accents stripped, as ``normalise`` leaves words.
TIME_CUES = frozenset("""
today tonight tomorrow now currently current latest newest recent recently yesterday weekend
this_week this_weekend this_morning this_evening right_now rn atm nowadays upcoming live
opening closed price prices cost rate rates score scores weather forecast news headlines
traffic delayed delays delay strike schedule showtimes tickets available release released
hoy ahora ahorita manana esta_noche esta_semana este_finde este_fin actual actualmente ultimo
ultima ultimos ultimas precio precios cotizacion pronostico noticias abierto abierta horario
horarios partido resultado todavia reciente
hui maintenant demain ce_soir cette_semaine actuel actuelle actuellement dernier
derniere dernieres derniers prix meteo actualites ouvert ouverte horaires
heute jetzt morgen heute_abend diese_woche aktuell aktuelle aktuellen neueste neuesten preis preise
wetter nachrichten geoffnet offnungszeiten ergebnis
oggi adesso domani stasera questa_settimana attuale attualmente ultime ultimo prezzo prezzi meteo
notizie aperto aperta orari partita risultato
hoje agora amanha esta_noite atual atualmente ultimas preco precos cotacao previsao noticias
aberto aberta horario jogo resultado
vandaag nu prijs weer nieuws dzisiaj dzis teraz jutro pogoda avui ara dema preu noticies
""".split())
CUES = False  # whether the cue features are on (bench/routing_cv.py --lowo NAME:cues=1 compares)


def cue_tokens(words: list[str]) -> list[str]:
    """One ``cue:time`` token per time-sensitive word or two-word phrase in the clause."""
    if not CUES:
        return []
    pairs = [f"{a}_{b}" for a, b in itertools.pairwise(words)]
    return ["cue:time" for w in words + pairs if w in TIME_CUES]


def _h(token: str) -> int:
    return zlib.crc32(token.encode()) & (DIM - 1)


def tokens(text: str, context: tuple[str, ...] = ()) -> list[str]:
    norm = normalise(text)
    words = norm.split()
    out = [f"w:{w}" for w in words]
    out += [f"b:{a}_{b}" for a, b in itertools.pairwise(words)]
    out += cue_tokens(words)
    if words:
        out.append(f"first:{words[0]}")
        out.append(f"last:{words[-1]}")
    for w in words:
        padded = f" {w} "
        for n in NGRAMS:
            out += [f"c{n}:{padded[i:i + n]}" for i in range(max(1, len(padded) - n + 1))]
    return out


def context_tokens(text: str, context: tuple[str, ...]) -> list[str]:
    """Attachment kinds and clause position, alone and crossed with the first word
    ("describe it" after a screenshot is not "describe it" with nothing before)."""
    words = normalise(text).split()
    out = [f"ctx:{c}" for c in context]
    out += [f"ctxw:{c}:{words[0]}" for c in context if words]
    return out


def sparse(text: str, context: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values): the clause's n-grams (log-scaled counts, unit length) plus the
    context tokens at a fixed weight, so a long request does not drown its attachment."""
    idx = np.fromiter((_h(t) for t in tokens(text)), dtype=np.int64)
    vals = np.zeros(0, np.float32)
    if idx.size:
        idx, counts = np.unique(idx, return_counts=True)
        vals = (1.0 + np.log(counts)).astype(np.float32)
        vals /= np.linalg.norm(vals)
    ctx = np.fromiter((_h(t) for t in context_tokens(text, context)), dtype=np.int64)
    if ctx.size:
        idx = np.concatenate([idx, ctx])
        vals = np.concatenate([vals, np.full(ctx.size, CONTEXT_WEIGHT, np.float32)])
    return idx, vals


CONTEXT_WEIGHT = 0.7
