"""The English + Spanish emotion lexicon: words and emoji that lean towards one of
Plutchik's eight emotions, negations and intensifiers. Not a classifier on its own: its
hits are features of the trained model in ``emotion.py`` (they carry the model to words the
training set never showed it), and its intensifiers scale intensity.
"""

from __future__ import annotations

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
SPANISH_HINTS = {"el", "la", "que", "de", "y", "estoy", "muy", "pero", "por", "mi", "es", "me", "no", "una", "con",
                  "para", "tengo", "esta", "los", "las", "hoy"}


def lookup(word: str) -> str | None:
    """The emotion ``word`` (lower case, no accents) leans towards, if any."""
    hit = _EXACT.get(word)
    if hit:
        return hit
    if len(word) < 4:
        return None
    for prefix, emo in _PREFIXES:
        if word.startswith(prefix) and len(prefix) >= 3:
            return emo
    return None
