"""Facts about the user (semantic memory) pulled out of what they say, and how important
a message is. Rules, English and Spanish: cheap, predictable, and they never invent a
fact the user did not state."""

from __future__ import annotations

import re

_END = r"((?:(?! and | but | because | y | pero | porque )[^.,;!?\n]){2,60})"  # up to a clause break
_NAME = r"([A-ZÁÉÍÓÚÑ][\wáéíóúñü'-]{1,30}(?: [A-ZÁÉÍÓÚÑ][\wáéíóúñü'-]{1,30})?)"
_REL_EN = ("wife|husband|sister|brother|mother|mom|mum|father|dad|son|daughter|friend|best friend|partner|"
           "girlfriend|boyfriend|dog|cat|boss|grandmother|grandfather|grandma|grandpa")
_REL_ES = ("esposa|esposo|marido|mujer|hermana|hermano|madre|mamá|padre|papá|hijo|hija|amigo|amiga|mejor amigo|"
           "mejor amiga|pareja|novia|novio|perro|perra|gato|gata|jefe|jefa|abuela|abuelo")

# (pattern, template); templates use {0}, {1} for the groups.
RULES: list[tuple[re.Pattern[str], str]] = [(re.compile(p, re.IGNORECASE if i else 0), t) for p, t, i in [
    (rf"\b(?i:my name is) {_NAME}", "The user's name is {0}.", False),
    (rf"\b(?i:i'm|i am) (?i:called) {_NAME}", "The user's name is {0}.", False),
    (rf"\b(?i:call me) {_NAME}", "The user wants to be called {0}.", False),
    (rf"\b(?i:my) (?i:({_REL_EN}))(?:'s name)? is (?:called |named )?{_NAME}", "The user's {0} is called {1}.", False),
    (rf"\bi live in {_END}", "The user lives in {0}.", True),
    (rf"\bi(?:'m| am) from {_END}", "The user is from {0}.", True),
    (rf"\bi work (?:at|for) {_END}", "The user works at {0}.", True),
    (rf"\bi work as (?:an? )?{_END}", "The user works as {0}.", True),
    (rf"\bi(?: really)? (like|love|enjoy|hate|dislike|prefer) {_END}", "The user {0}s {1}.", True),
    (rf"\bi(?: really)? (?:am allergic|'m allergic) to {_END}", "The user is allergic to {0}.", True),
    (rf"\bmy birthday is (?:on )?{_END}", "The user's birthday is {0}.", True),
    (rf"\bmy favou?rite (\w+) is {_END}", "The user's favourite {0} is {1}.", True),
    (r"\b(?:please )?(?:remember|don't forget|do not forget) that ([^\n]{3,200})", "The user asked to remember: {0}",
     True),
    (rf"\b(?i:me llamo) {_NAME}", "El usuario se llama {0}.", False),
    (rf"\b(?i:mi nombre es) {_NAME}", "El usuario se llama {0}.", False),
    (rf"\b(?i:mi) (?i:({_REL_ES})) se llama {_NAME}", "{0} del usuario: {1}.", False),
    (rf"\bvivo en {_END}", "El usuario vive en {0}.", True),
    (rf"\bsoy de {_END}", "El usuario es de {0}.", True),
    (rf"\btrabajo (?:en|para) {_END}", "El usuario trabaja en {0}.", True),
    (rf"\btrabajo como {_END}", "El usuario trabaja como {0}.", True),
    (rf"\bme (gusta|gustan|encanta|encantan) {_END}", "Al usuario le {0} {1}.", True),
    (rf"\b(odio|detesto|prefiero) {_END}", "El usuario {0} {1}.", True),
    (rf"\bsoy alérgic[oa] a {_END}", "El usuario es alérgico a {0}.", True),
    (rf"\bmi cumpleaños es (?:el )?{_END}", "El cumpleaños del usuario es el {0}.", True),
    (r"\b(?:recuerda|no olvides) que ([^\n]{3,200})", "El usuario pidió recordar: {0}", True),
]]

_ES_VERB = {"odio": "odia", "detesto": "detesta", "prefiero": "prefiere"}
_PRONOUNS = re.compile(r"\b(my|mi|mis)\b", re.IGNORECASE)

IMPORTANT = re.compile(
    r"\b(remember|don't forget|do not forget|important|never forget|always|recuerda|no olvides|importante|"
    r"nunca olvides|siempre)\b", re.IGNORECASE)
PERSONAL = re.compile(r"\b(my|i am|i'm|mi|mis|soy|me llamo|tengo)\b", re.IGNORECASE)


def extract_facts(text: str) -> list[str]:
    """Third-person facts the user stated about themselves, in the language they used."""
    facts: list[str] = []
    for pattern, template in RULES:
        for m in pattern.finditer(text):
            groups = [g.strip().rstrip(".") for g in m.groups()]
            groups = [_ES_VERB.get(g.lower(), g) for g in groups]
            if template.startswith("{0} del usuario"):
                groups[0] = groups[0].capitalize()
            fact = template.format(*groups)
            fact = _PRONOUNS.sub(lambda p: {"my": "their", "mi": "su", "mis": "sus"}[p.group(1).lower()], fact) \
                if "remember" in template or "recordar" in template else fact
            if fact not in facts:
                facts.append(fact)
    return facts


def importance(text: str, emotion_intensity: float = 0.0, facts: int = 0) -> float:
    """0..1: explicit requests to remember, personal statements and strong emotion matter more."""
    score = 0.35
    if IMPORTANT.search(text):
        score += 0.3
    if PERSONAL.search(text):
        score += 0.1
    if facts:
        score += 0.15
    score += 0.25 * max(0.0, min(emotion_intensity, 1.0))
    return round(min(score, 1.0), 3)


_LEAD_IN = re.compile(r"^\s*(?:please\s+|por favor,?\s+)?(?:remember|don't forget|do not forget|note|recuerda|"
                      r"no olvides|apunta|anota)(?:\s+(?:that|que))?[,:]?\s+", re.IGNORECASE)


def strip_request(text: str) -> str:
    """"Remember that my sister is Ana" -> "my sister is Ana" (what to store, not the request)."""
    out = _LEAD_IN.sub("", text, count=1).strip()
    if not out or out == text.strip():
        return text.strip()
    return out[:1].upper() + out[1:]
