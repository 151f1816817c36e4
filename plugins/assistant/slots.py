"""Arguments for a planned step, read from the clause by what the tool's schema asks for.

The router knows no tool's argument names: ``bind_args`` (plan.py) maps semantic values
onto a schema's fields. This module finds the semantic values a clause contains: the
words to speak or type (a quoted payload, or what follows a colon), a URL, a file path,
screen coordinates, a key combination, an application name. A value is only extracted
when the schema has a field that takes it, and ``missing`` says which required fields a
clause cannot fill: such a tool is not a valid step for it.
"""

from __future__ import annotations

import re
from typing import Any

from .features import SOURCE_EXTS, strip_accents

QUOTE = re.compile(r"(?<![\w])[\"“«‘']([^\"”»’']{1,400})[\"”»’'](?![\w])")
URL = re.compile(r"\b(?:https?://[^\s,;)]+|www\.[^\s,;)]+|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|dev|ai|es|de|"
                 r"fr|it|pt|uk|gov|edu|co|info|news|app)\b(?:/[^\s,;)]*)?)", re.I)
PATH = re.compile(rf"(?:[\w.-]*/)*[\w-]+(?:\.[\w-]+)*\.(?:{SOURCE_EXTS})\b|\b(?:Makefile|Dockerfile|Jenkinsfile)\b")
COORDS = re.compile(r"(-?\d{1,5})\s*[, x]\s*(-?\d{1,5})")
MODIFIERS = ("ctrl", "control", "strg", "alt", "shift", "cmd", "command", "win", "super", "meta", "option")
NAMED_KEYS = ("enter", "return", "escape", "esc", "tab", "space", "backspace", "delete", "del", "home", "end",
              "pageup", "pagedown", "up", "down", "left", "right", "insert", "intro", "entrée", "eingabe", "invio")
KEY_ALIASES = {"control": "ctrl", "strg": "ctrl", "command": "cmd", "escape": "esc", "return": "enter",
               "intro": "enter", "entrée": "enter", "eingabe": "enter", "invio": "enter", "del": "delete"}
# The Windows key, only when called a key ("press the Windows key", "pulsa la tecla Windows"):
# "windows" alone is the windows on the screen.
_WIN_KEY = re.compile(r"(?i)\bwin(?:dows)?[ -]?(?:key|taste|tecla|touche|tasto)\b|\b(?:tecla|touche|tasto|taste|key)"
                      r"\s+(?:de\s+)?win(?:dows)?\b")
_KEY = re.compile(r"(?i)\b((?:" + "|".join(MODIFIERS) + r")(?:\s*[+-]\s*|\s+)(?:(?:" + "|".join(MODIFIERS)
                  + r")(?:\s*[+-]\s*|\s+))*(?:f\d{1,2}|[a-z0-9]\b|" + "|".join(NAMED_KEYS) + r")|\bf\d{1,2}\b|\b(?:"
                  + "|".join(NAMED_KEYS) + r")\b)")
# Leading words that are the request's frame, not the application's name.
_OPEN_FRAME = re.compile(r"(?i)^(?:(?:hey|ok|okay|please|pls|can you|could you|can u|would you|now|then|just|"
                         r"por favor|porfa|oye)\s+)*\s*\S+(?:\s+up)?\s+(?:(?:me|the|my|a|el|la|mi|le|den|die|das|"
                         r"il|lo|o|a)\s+)?(?:(?:app|application|program|programme|aplicaci[oó]n|programa)\s+)?")
_TAIL = re.compile(r"(?i)\s*(?:for me|please|pls|por favor|porfa|real quick|now|app|application)\s*[.!?]*$")


def payload(clause: str) -> str | None:
    """Words to be said or typed verbatim: a quoted span after a short instruction, or what
    follows "...: " when the part before it is the instruction."""
    m = re.search(r"^([^:]{3,80}):\s+(.+)$", clause, re.S)
    if m and not URL.search(m.group(1)) and len(m.group(1).split()) >= 2:
        return m.group(2).strip()
    q = QUOTE.search(clause)
    if q and len(QUOTE.sub(" ", clause[: q.start()]).split()) <= 5:
        return q.group(1).strip()
    return None


def url(clause: str) -> str | None:
    m = URL.search(clause)
    if not m:
        return None
    u = m.group(0).rstrip(".,;:!?)")
    return u if re.match(r"https?://", u) else f"https://{u}"


def keys(clause: str) -> list[str] | None:
    m = _KEY.search(clause)
    if not m:
        return ["win"] if _WIN_KEY.search(clause) else None
    parts = [p.lower() for p in re.split(r"\s*[+-]\s*|\s+", m.group(1).strip()) if p]
    return [KEY_ALIASES.get(p, p) for p in parts][:5]


def coords(clause: str) -> tuple[int, int] | None:
    m = COORDS.search(clause)
    return (int(m.group(1)), int(m.group(2))) if m else None


# Words for a direction in the six languages, on a lower-cased copy without accents.
_DIRECTIONS = {
    "up": r"up|upwards|arriba|sube|subir|haut|monte|oben|hoch|rauf|alto|cima",
    "down": r"down|downwards|abajo|baja|bajar|bas|descends?|unten|runter|giu|basso|baixo|desce",
    "left": r"left|izquierda|gauche|links|sinistra|esquerda",
    "right": r"right|derecha|droite|rechts|destra|direita",
}


def direction(clause: str) -> str | None:
    """Up, down, left or right, when the clause names one ("scroll down", "baja la página")."""
    low = strip_accents(clause.lower())
    found = [(m.start(), d) for d, words in _DIRECTIONS.items() for m in re.finditer(rf"\b(?:{words})\b", low)]
    return min(found)[1] if found else None


def app_name(clause: str) -> str | None:
    text = QUOTE.sub(lambda m: m.group(1), clause).strip()
    name = _TAIL.sub("", _OPEN_FRAME.sub("", text, count=1)).strip(" .!?¡¿,")
    return name or None


_WINDOW_WORD = r"(?:window|ventana|fen[eê]tre|fenster|finestra|janela)"
_WINDOW = re.compile(
    rf"(?i)^(?:(?:to|over to|a|à|al|zum|zur|zu|alla|al|para|para a|pra)\s+)?(?:(?:the|my|la|el|mi|le|la|ma|"
    rf"das|den|die|il|la|a|o|une?|an?)\s+)?(?:{_WINDOW_WORD}\s+(?:of|called|named|de|del|du|des|von|vom|di|della|"
    rf"del|do|da|dos)?\s*(?:(?:the|la|el|le|il|o|a)\s+|l')?)?(.+?)(?:[\s-]+{_WINDOW_WORD})?(?:\s+(?:to|in) "
    rf"(?:the )?front|\s+au premier plan|\s+nach vorne|\s+in primo piano|\s+para a frente|\s+delante)?$")


_POLITE = re.compile(r"(?i)^(?:please|pls|bitte|por favor|porfa|per favore|s'il te pla[iî]t|s'il vous pla[iî]t)\s+")


def window_name(clause: str) -> str | None:
    """The window a clause names: "switch to the Firefox window" -> "Firefox"."""
    name = app_name(clause)
    if not name:
        return None
    name = _POLITE.sub("", name)
    m = _WINDOW.match(name)
    return (m.group(1).strip(" .!?,") if m else name) or name


def values_for(clause: str, schema: dict[str, Any], *, default_text: str) -> dict[str, Any]:
    """Semantic values for the fields ``schema`` has; ``default_text`` fills text fields
    when the clause has no payload."""
    props = schema.get("properties", {})
    out: dict[str, Any] = {}
    if {"x", "y"} <= props.keys():
        xy = coords(clause)
        if xy:
            out["x"], out["y"] = xy
        low = strip_accents(clause.lower())
        if "button" in props and re.search(r"\bright|derech|droit|recht", low):
            out["button"] = "right"
        if "clicks" in props and re.search(r"\bdouble|doble|doppel|doppio|duplo", low):
            out["clicks"] = 2
    for prop, extract in (("direction", direction), ("keys", keys), ("url", url)):
        if prop in props and (value := extract(clause)):
            out[prop] = value
    if {"command", "app", "application"} & props.keys() and (name := app_name(clause)):
        out["app"] = name
    if "window" in props and (name := window_name(clause)):
        out["window"] = name
    if "path" in props and not ({"image", "audio", "video"} & props.keys()):
        p = PATH.search(clause)
        if p:
            out["path"] = p.group(0)
    said = payload(clause)
    out["text"] = said if said is not None else default_text
    return out
