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
_CONNECTIVE = (r"\s*(?:[,.;]\s*)?\b(?:and then|and also|and|then|afterwards|after that|y luego|y despues|"
               r"y tambien|y|e luego|e depois|e poi|e|puis|et puis|et|und dann|und|dann|depois|luego|despues|"
               r"poi)\s+")
_SPLIT = re.compile(_CONNECTIVE + r"(?=(?:me\s|it\s|them\s|then\s|luego\s|despues\s)?" + _NEXT + r"\b)"
                    r"|\s*[.;]\s+(?=then\b|luego\b|despues\b|puis\b|dann\b)")
# Wider: more verb forms (Italian polite forms, Spanish/Portuguese/French/German imperatives with
# their pronouns) after a connective, and a new sentence that starts with an action verb ("... ? Say
# it out loud.", "... . Me lo legga ad alta voce"); the second action of a request is often its own
# sentence in people's writing.
_MORE = (r"(?:legga|legge|leggimi|leggimelo|leggimela|leggetelo|dica|dici|dimmi|dimmelo|racconta|racconti|raccontami|"
         r"salva|salvi|salvalo|salvamelo|tieni|tienilo|tenga|segna|segnati|segnamelo|ricordamelo|ricordami|"
         r"descriva|scriva|traduca|cerca|cerchi|apra|premi|prema|manda|mandami|"
         r"dale|leemela|leemelas|leemelos|guardame|guardamela|guardate|guardatelo|apuntame|dimela|cuentame|"
         r"decris-le|decris-la|decris-le-moi|decris-la-moi|dis-le|dis-le-moi|dis-moi|lis-moi|garde|gardes|"
         r"enregistre|note|retiens|envoie|fais|"
         r"speicher|sags|sag's|lies|lies's|merk's|schick|mach|"
         r"le-me|le-ma|diz-me|diz-ma|diz-mo|guarda-me|grava|anota|lembra-me|manda|faz|"
         r"lees|zeg|onthoud|bewaar|zapamietaj|powiedz|przeczytaj)")
_LEAD = r"(?:(?:me|te|se|lo|la|le|mi|ce|it|them|then|poi|luego|despues|also|please|pls)\s+){0,2}"
# A new sentence splits off only when it acts on what the sentence before produced ("... ? Say it
# out loud.", "... . Me lo legga", "Dis-le-moi"): a sentence of context does not ("I'm driving.
# What's the weather"), nor one that asks to keep what was just said ("My locker is 214.
# Remember that": the statement is what to remember).
_SENTENCE_NEXT = (r"(?:(?:me|te|se|mi|ce)\s+)?(?:lo|la|le|li|los|las)\s+(?:read|say|tell|translate|describe|"
                  r"lee|leeme|di|dime|traduce|describe|lis|dis|decris|traduis|leggi|legga|legge|leggimi|dica|dici|"
                  r"descrivi|descriva|traduci|traduca|racconta|racconti|le|diz|descreve|traduz)\b"
                  r"|(?:please\s+|pls\s+)?(?:say|read|speak|translate|describe|print|copy)\s+(?:it|them|that|this)\b"
                  r"|(?:dis-le|dis-le-moi|dis-la-moi|lis-le|lis-le-moi|lis-la-moi|decris-le|decris-le-moi|sag's|sags|"
                  r"lies's|dimelo|dilo|dimela|leelo|leemelo|leemela|leggilo|leggila|leggimelo|leggimela|dimmelo|"
                  r"le-o|le-a|diz-mo|diz-ma)\b")
_SPLIT_WIDE = re.compile(_CONNECTIVE + r"(?=" + _LEAD + r"(?:" + _NEXT + r"|" + _MORE + r")\b)"
                         r"|\s*[.;]\s+(?=then\b|luego\b|despues\b|puis\b|dann\b)"
                         r"|(?<=[.?!])\s+(?=" + _SENTENCE_NEXT + r")")
WIDE = False  # whether requests split the wider way (bench/routing_cv.py --lowo NAME:wide_split=1 compares)


def split_clauses(text: str) -> list[str]:
    """The request's clauses, in order, in their original wording."""
    masked = _QUOTE.sub(lambda m: "\0" * len(m.group(0)), _fold(text))
    cuts = [(m.start(), m.end()) for m in (_SPLIT_WIDE if WIDE else _SPLIT).finditer(masked)]
    out, pos = [], 0
    for start, end in cuts:
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    parts = [re.sub(r"^(?:then|luego|despues|después|puis|dann)\s+", "", p.strip(" ,.;"), flags=re.I) for p in out]
    parts = [p for p in parts if p]
    return parts or [text.strip()]
