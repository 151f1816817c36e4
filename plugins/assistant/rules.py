"""The few routing rules that are structure, not guesswork: where a request splits into
clauses. Which tool each clause asks for is learned (``intent_model``); what an attached
file needs first (audio is transcribed, an image is described for a text tool) is read
from the corpus's plans (``router``).

A request splits before a connective ("and", "then", "y luego", "et", "und dann"...)
that is followed by a verb starting a new action ("... and read it aloud", "... y
recuérdalo"). Quoted text is never split: a sentence to be spoken or typed is payload.
"""

from __future__ import annotations

import re
import unicodedata


def strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _fold(s: str) -> str:
    """Lower case without accents, keeping every character's position."""
    return "".join((strip_accents(c)[:1] or c).lower() for c in s)


_QUOTE = re.compile(r"(?<![\w])[\"“«‘']([^\"”»’']{1,400})[\"”»’'](?![\w])|`[^`]{1,400}`")

# Verbs that start a second action after a connective.
_NEXT = (r"(?:read|say|speak|remember|save|store|note|describe|type|tell|translate|summari[sz]e|sum|write|"
         r"give|send|show|press|hit|click|explain|draw|make|create|generate|open|narrate|recite|email|keep|"
         r"capture|take|search|look|find|print|copy|jot|"
         r"lee|leelo|leela|leemelo|lelo|di|dime|dimelo|dilo|recuerda|recuerdalo|recuerdala|recuerdame|acuerdate|"
         r"guarda|guardalo|guardala|describe|describela|describelo|describemela|describemelo|escribe|teclea|"
         r"traduce|traducelo|traducela|resume|resumelo|resumemelo|muestrame|pulsa|presiona|haz|explica|busca|"
         r"apunta|apuntalo|apuntamelo|anota|anotalo|anotamelo|guardamelo|copia|"
         r"lis|lis-le|lis-la|dis|decris|traduis|ecris|tape|souviens|resume-le|"
         r"lies|sag|beschreibe|ubersetze|speichere|merke|merk|tippe|drucke|fasse|"
         r"leggi|leggilo|leggila|di'|descrivi|ricorda|scrivi|traduci|"
         r"le|le-o|le-a|diz|descreve|lembra|escreve|traduz|"
         # pressing, clicking, opening and searching in French, German, Italian, Portuguese
         r"druck|drucke|klick|klicke|offne|suche|schreib|schreibe|premi|clicca|apri|appuie|clique|ouvre|cherche|"
         r"retiens|carrega|pressiona|clica|abre|abra|procura)")
_SPLIT = re.compile(r"\s*(?:[,.;]\s*)?\b(?:and then|and also|and|then|afterwards|after that|y luego|y despues|"
                    r"y tambien|y|e luego|e depois|e poi|e|puis|et puis|et|und dann|und|dann|depois|luego|despues|"
                    r"poi)\s+(?=(?:me\s|it\s|them\s|then\s|luego\s|despues\s)?" + _NEXT + r"\b)"
                    r"|\s*[.;]\s+(?=then\b|luego\b|despues\b|puis\b|dann\b)")


def split_clauses(text: str) -> list[str]:
    """The request's clauses, in order, in their original wording."""
    masked = _QUOTE.sub(lambda m: "\0" * len(m.group(0)), _fold(text))
    cuts = [(m.start(), m.end()) for m in _SPLIT.finditer(masked)]
    out, pos = [], 0
    for start, end in cuts:
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    parts = [re.sub(r"^(?:then|luego|despues|después|puis|dann)\s+", "", p.strip(" ,.;"), flags=re.I) for p in out]
    parts = [p for p in parts if p]
    return parts or [text.strip()]
