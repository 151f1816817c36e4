"""Fast routing rules: weighted patterns per intent, and the choice of tool within one.

Patterns run on a normalised copy of the request: lower case, accents stripped (so
"función"/"funcion" and "vídeo"/"video" match alike), quotes masked (a sentence to be
spoken or typed must not route the request) and, after a colon, the payload cut off.
English and Spanish are covered throughout; the common verbs of French, German,
Italian and Portuguese too. Each pattern says what it is evidence for, not which
example it came from: the aim is the task, not a list of sentences.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

INTENTS = ("chat", "vision", "code", "imagegen", "videogen", "speak", "transcribe", "research", "pc_control",
           "memory")


def strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


_QUOTE = re.compile(r"(?<![\w])['\"‘“«]([^'\"’”»]{1,400})['\"’”»](?![\w])")
_URL = re.compile(r"\b(?:https?://\S+|www\.\S+|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|dev|ai|es|de|fr|"
                  r"uk|gov|edu|co|info|news|app)(?:/\S*)?)", re.I)
_PATH = re.compile(r"(?:[\w./-]*/)?[\w-]+\.(?:py|js|jsx|ts|tsx|rs|go|java|kt|c|h|cc|cpp|hpp|cs|rb|php|swift|sql|sh|"
                   r"bash|ps1|html|css|scss|vue|svelte|json|ya?ml|toml|ini|lua|r|m|scala|dart|ipynb|md|txt)\b")


@dataclass
class Text:
    """The request prepared for matching."""

    original: str
    norm: str  # lower case, no accents, quotes masked, whole text
    head: str  # the instruction: ``norm`` before a payload colon
    quotes: list[str] = field(default_factory=list)
    url: str | None = None
    path: str | None = None
    clauses: list[str] = field(default_factory=list)


def prepare(text: str) -> Text:
    original = text.strip()
    if original.lower().startswith("[spoken]"):
        original = original[8:].strip()
    quotes = [m.group(1) for m in _QUOTE.finditer(original)]
    masked = _QUOTE.sub(" QUOTED ", original)
    url_m = _URL.search(original)
    path_m = None if url_m else _PATH.search(original)
    norm = " ".join(strip_accents(masked).lower().replace("’", "'").split())
    head = norm
    colon = re.search(r":\s", norm)
    # "Speak this out loud: <payload>" - the words after the colon are the payload,
    # unless the part before it is too short to be the instruction ("Note: ...").
    if colon and len(norm[: colon.start()].split()) >= 2 and not url_m:
        head = norm[: colon.start()]
    t = Text(original, norm, head, quotes, url_m.group(0) if url_m else None, path_m.group(0) if path_m else None)
    t.clauses = split_clauses(head)
    return t


# Follow-up verbs that start a second action in "X and Y" ("... and read it aloud").
_NEXT = (r"(?:read|say|speak|remember|save|store|note|describe|type|tell|translate|summari[sz]e|sum|write|"
         r"give|send|show|press|click|explain|draw|make|create|generate|open|narrate|recite|email|"
         r"lee|leelo|leela|lelo|di|dime|dilo|recuerda|recuerdalo|recuerdala|guarda|guardalo|describe|describela|"
         r"describelo|escribe|teclea|traduce|traducelo|traducela|resume|resumelo|muestrame|pulsa|haz|explica|"
         r"lis|dis|decris|traduis|lies|sag|beschreibe|ubersetze|speichere|merke)")
_SPLIT = re.compile(r"\s*(?:,\s*)?\b(?:and then|and also|and|then|afterwards|y luego|y despues|y tambien|y|e|"
                    r"puis|et|und dann|und|depois)\s+(?=(?:me\s|it\s|them\s|then\s)?" + _NEXT + r"\b)")


def split_clauses(head: str) -> list[str]:
    parts = [p.strip(" ,.;") for p in _SPLIT.split(head)]
    return [p for p in parts if p] or [head]


# --- lexicon -----------------------------------------------------------------------

IMG_NOUN = (r"(?:image|picture|pic|photo|photograph|drawing|illustration|logo|icon|poster|wallpaper|portrait|"
            r"painting|artwork|sticker|banner|avatar|sketch|cartoon|meme|emoji|comic|infographic|mascot|"
            r"imagen|imagenes|foto|fotografia|dibujo|ilustracion|logotipo|cartel|retrato|pintura|icono|"
            r"fondo de pantalla|caricatura|bild|zeichnung|dessin|immagine|disegno|imagem|desenho)")
VID_NOUN = (r"(?:video|videos|clip|clips|animation|animated|movie|film|timelapse|time-lapse|gif|footage|"
            r"videoclip|animacion|animado|animada|pelicula|cortometraje|filmacion)")
GEN = (r"(?:generate|create|make|draw|paint|render|design|sketch|illustrate|produce|imagine|give me|"
       r"genera|generar|generame|crea|crear|creame|haz|hazme|hacer|dibuja|dibujame|pinta|pintame|disena|"
       r"disename|produce|renderiza|quiero|erstelle|zeichne|male|generiere|mach|dessine|cree|genere|fais|crie|"
       r"gere|faca|desenhe|crea|disegna|genera)")
LANGS = (r"(?:python|javascript|typescript|java|kotlin|rust|golang|c\+\+|c#|csharp|ruby|php|swift|sql|bash|"
         r"shell script|powershell|html|css|react|vue|svelte|angular|django|flask|fastapi|node(?:\.js)?|"
         r"numpy|pandas|dockerfile|regex|regexp|haskell|scala|perl|lua|dart|flutter|julia|matlab|assembly|"
         r"tailwind|jquery|graphql|json|yaml|go (?:program|function|code|script|module))")
CODE_NOUN = (r"(?:function|functions|class|classes|method|script|program|regex|regular expression|api|endpoint|"
             r"bug|bugs|stack ?trace|traceback|exception|compile|compiler|refactor|unit tests?|test suite|"
             r"type hints|variable|variables|loop|array|algorithm|snippet|code|codebase|source|repo|repository|"
             r"pull request|commit|query|component|library|module|syntax|segfault|null pointer|linter|"
             r"decorator|recursion|iterator|dataframe|docstrings?|codigo|funcion|funciones|programa|clase|"
             r"metodo|bucle|arreglo|algoritmo|consulta|componente|libreria|modulo|variable|"
             r"funktion|programm|fonction|programme|funcao|funzione)")
CODE_VERB = (r"(?:write|implement|code|build|create|generate|fix|refactor|debug|rename|optimi[sz]e|port|"
             r"migrate|rewrite|escribe|implementa|programa|crea|genera|arregla|corrige|refactoriza|depura|"
             r"schreib|schreibe|ecris|escreva|scrivi)")
EDIT_VERB = (r"(?:fix|refactor|rename|add|update|modify|change|optimi[sz]e|clean up|port|migrate|convert|"
             r"rewrite|debug|remove|replace|extract|split|simplify|speed up|make .{1,30} (?:faster|async)|"
             r"arregla|corrige|refactoriza|anade|agrega|modifica|cambia|renombra|optimiza|reescribe|elimina|"
             r"quita|depura|simplifica|actualiza|repara)")
EXPLAIN = (r"(?:explain|what does|what do|what is this|what's this|what is wrong|what's wrong|why (?:does|do|is|am|"
           r"are|did|would)|meaning of|what .{0,20}\bmeans?\b|walk me through|how does this|explica|explicame|"
           r"que hace|que significa|por que|que quiere decir|erklare|explique)")
ERROR_TOKEN = re.compile(r"\b\w*(?:error|exception)\b|traceback|segmentation fault|undefined is not|"
                         r"cannot read propert|borrowed value|null ?pointer|stack overflow", re.I)

CREATIVE = (r"(?:poem|poems|story|stories|haiku|limerick|song|lyrics|essay|joke|jokes|letter|e-?mail|speech|"
            r"toast|riddle|slogan|tagline|prose|paragraphs?|sonnet|verse|tweet|bio|cover letter|recipe|"
            r"poema|poesia|cuento|historia|chiste|cancion|carta|ensayo|discurso|receta|parrafo|"
            r"gedicht|poeme|histoire|poesia|poema)")
QUESTION = r"^(?:what|what's|whats|who|who's|why|how|when|where|which|is|are|can|could|should|do|does|did|" \
           r"que|cual|cuales|quien|como|cuando|donde|por que|cuanto|cuantos|es|hay|was|wie|warum|quoi|comment)\b"
POLITE = r"(?:can you|could you|would you|will you|please|puedes|podrias|por favor|pourrais|kannst du)"
FRESH = (r"(?:latest|newest|recent|most recent|current|currently|today|today's|tonight|tomorrow's|this (?:week|"
         r"weekend|month|year)|right now|breaking|news|headlines|weather|forecast|stock price|share price|"
         r"exchange rate|scores?|standings|release notes|reviews|sources|citations|opening hours|"
         r"open(?:ing)? times|timetable|schedule|ultimas?|ultimos?|noticias|hoy|actual|actuales|este fin de semana|"
         r"clima|pronostico|horarios?|precio|precios|resenas|fuentes|cotizacion|dernieres?|nouvelles|actualites|"
         r"neueste|nachrichten|aktuell|wetter)")
SEARCH = (r"(?:search|look up|lookup|look for|google|browse|research|find out|find me|find|investigate|"
          r"check online|busca|buscar|buscame|investiga|averigua|encuentra|encuentrame|consulta|mira en "
          r"internet|cherche|recherche|trouve|trouve-moi|suche|finde|recherchiere|procure|pesquise|cerca)")
WEB = r"(?:web|internet|online|the net|en linea|en la red|google|sources|articles|websites?|sites?)"

APPS = (r"(?:calculator|calc|notepad|spotify|terminal|console|chrome|firefox|safari|edge|browser|vs ?code|"
        r"visual studio|word|excel|powerpoint|outlook|teams|slack|discord|zoom|settings|control panel|"
        r"file explorer|explorer|finder|paint|photoshop|gimp|blender|steam|vlc|itunes|music|mail|calendar|"
        r"task manager|cmd|powershell|obs|telegram|whatsapp|signal|notes|preview|textedit|"
        r"calculadora|bloc de notas|explorador(?: de archivos)?|navegador|configuracion|ajustes|"
        r"administrador de tareas|panel de control|correo|calendario|rechner|editor|taschenrechner|"
        r"calculatrice)")
OPEN = r"(?:open|launch|start|run|fire up|bring up|abre|abrir|abreme|inicia|iniciar|ejecuta|lanza|arranca|" \
       r"ouvre|ouvrir|lance|offne|oeffne|starte|abra|apri|avvia)"
KEYS = (r"(?:ctrl|control|alt|shift|cmd|command|win|windows key|super|enter|return|escape|esc|tab|space|"
        r"spacebar|f\d{1,2}|delete|del|backspace|home|end|page ?up|page ?down|up arrow|down arrow|"
        r"left arrow|right arrow|intro|suprimir|tecla)")
PRESS = r"(?:press|hit|push|tap|pulsa|presiona|oprime|aprieta|teclea|appuie sur|druck|drucke)"
CLICK = r"(?:double[- ]?click|right[- ]?click|left[- ]?click|click|clic|haz (?:doble )?clic|pulsa en|" \
        r"cliquez|klick|clique)"
SCREEN = (r"(?:screenshot|screen ?shot|screen capture|screen grab|capture (?:my|the|your) (?:screen|display|"
          r"desktop)|snapshot of (?:my|the) screen|captura(?: de)? (?:la )?pantalla|pantallazo|"
          r"capture d'ecran|bildschirmfoto|print ?screen)")
TYPE_TARGET = (r"(?:field|box|textbox|text box|input|terminal|window|document|search bar|address bar|"
               r"editor|prompt|form|notepad|campo|cuadro|ventana|documento|barra|formulario|bloc de notas)")

ALOUD = (r"(?:aloud|out loud|out-loud|outloud|en voz alta|a voz alta|en alto|a haute voix|laut vor|"
         r"ad alta voce|em voz alta)")
SPEAK_VERB = (r"(?:read|say|speak|pronounce|narrate|recite|announce|voice|lee|leelo|leela|leeme|lea|di|dilo|"
              r"dime|pronuncia|narra|recita|anuncia|lis|dis|lies|sag|sprich|leggi|di')")
TTS = (r"(?:text[- ]to[- ]speech|tts|into speech|to speech|as speech|voice ?over|spoken version|"
       r"audio (?:file|clip|recording|version|message) (?:of|with|that says|saying)|in (?:a|an|your) \w+ voice|"
       r"with (?:a|an|your) \w+ voice|(?:you|yourself) saying|a voz|en audio|audio de|"
       r"convierte .{0,40} (?:a|en) (?:voz|audio))")

REMEMBER = (r"(?:^(?:please |hey |ok |okay )?(?:remember|memori[sz]e|keep in mind|don't forget|do not forget|note "
            r"(?:that|down)|make a note|save (?:this|that|the fact)|store (?:this|that|the fact)|learn that)\b|"
            r"\bremember (?:that|this|my|i|i'm|i am)\b|"
            r"recuerda que|recuerda esto|recuerdalo|recuerda mi|recuerda el|recuerda la|acuerdate (?:de )?(?:que|"
            r"esto|mi)|no olvides (?:que|esto|mi)|apunta que|anota que|ten en cuenta que|guarda (?:que|esto|en "
            r"(?:la )?memoria)|guarda(?:lo|la)? en (?:tu |la |mi )?memoria|"
            r"(?:save|store|keep|put) (?:it |this |that )?(?:in|to|into) (?:your )?memory|memoriza|merk dir|"
            r"merke dir|souviens-toi|rappelle-toi|retiens que|"
            r"lembre-se|lembra que|ricorda che)")
RECALL = (r"(?:what did i (?:tell|say|mention|share)|do you remember|did i (?:ever )?(?:tell|mention)|"
          r"i (?:told|mentioned to|said to) you|\bi (?:said|told you|mentioned)\b|remind me (?:what|when|where|"
          r"who|which|of|about)|what do you (?:know|remember) about me|have i told you|what(?:'s| is| was) my "
          r"\w+(?: \w+)? again|que te dije|te dije|te acuerdas|recuerdas (?:que|cual|lo|donde|cuando|como|"
          r"el|la|mi|mis|si|a)|que sabes (?:de|sobre) mi|te conte|te mencione|tu te souviens|erinnerst du|"
          r"ti ricordi|voce lembra)")
FORGET = (r"(?:^(?:please )?(?:forget|erase|wipe|unlearn)\b|(?:delete|remove|erase|wipe|clear|drop) "
          r"(?:what you know|everything you know|all you know|your memory|your memories|the memory|"
          r"any memory|what i told you|that memory|the fact)|stop remembering|forget (?:about |that |my |"
          r"everything|what)|olvida|olvidate|borra (?:lo que sabes|todo lo que|tu memoria|el recuerdo|"
          r"lo que te dije)|elimina (?:lo que sabes|el recuerdo)|oublie|vergiss|dimentica|esqueca)")


def rx(p: str) -> re.Pattern[str]:
    return re.compile(p)


# (intent, weight, pattern): matched against the instruction (``head``) unless noted.
RULES: list[tuple[str, float, re.Pattern[str]]] = [
    # image generation
    ("imagegen", 3.0, rx(rf"\b{GEN}\b(?:\W+\w+){{0,8}}?\W+{IMG_NOUN}\b")),
    ("imagegen", 3.0, rx(r"^(?:please |can you |could you |)(?:draw|paint|sketch|illustrate|dibuja|dibujame|"
                         r"pinta|pintame|zeichne|male|dessine|desenhe|disegna)\b")),
    ("imagegen", 1.5, rx(rf"\b(?:an?|una?|some) (?:\w+ )?{IMG_NOUN} (?:of|de|showing|with)\b")),
    ("imagegen", 0.6, rx(rf"\b{IMG_NOUN}\b")),
    ("imagegen", 1.0, rx(r"\b(?:watercolou?r|oil painting|pixel art|photorealistic|digital art|anime style|"
                         r"cartoon|3d render|pastel colou?rs|line art|acuarela|estilo)\b")),
    # video generation
    ("videogen", 3.5, rx(rf"\b{GEN}\b(?:\W+\w+){{0,8}}?\W+{VID_NOUN}\b")),
    ("videogen", 2.5, rx(r"\b(?:animate|anima)\b")),
    ("videogen", 1.2, rx(rf"\b{VID_NOUN}\b")),
    ("videogen", 1.0, rx(r"\b\d+[- ]?(?:second|sec|segundos?|s)\b")),
    # code
    ("code", 1.6, rx(rf"\b{LANGS}\b")),
    ("code", 1.5, rx(rf"\b{CODE_NOUN}\b")),
    ("code", 1.0, rx(rf"\b{CODE_VERB}\b(?:\W+\w+){{0,6}}?\W+{CODE_NOUN}\b")),
    ("code", 1.0, rx(rf"\b{EDIT_VERB}\b")),
    ("code", 1.0, rx(r"\b(?:off-by-one|type hints?|unit tests?|race condition|memory leak|deadlock|runtime|"
                     r"null|undefined|compil\w+|deploy\w*|pytest|linter|async|await|lambda|json|csv|sort|"
                     r"parse|parser|regex|int|string|integer|boolean)\b")),
    # chat
    ("chat", 0.8, rx(r".")),
    ("chat", 3.0, rx(rf"\b(?:write|compose|tell|give|escribe|escribeme|redacta|cuentame|dime|cuenta|schreib|"
                     rf"ecris|make up|invent|inventa|come up with)\b(?:\W+\w+){{0,6}}?\W+{CREATIVE}\b")),
    ("chat", 1.5, rx(rf"\b{CREATIVE}\b")),
    ("chat", 2.8, rx(r"\b(?:translate|translation|traduce|traducir|traduceme|traduction|traduis|ubersetze|"
                     r"ubersetzen|traduza|traduci)\b")),
    ("chat", 1.5, rx(r"\b(?:advice|tips|suggest|suggestions|recommend|recommendation|difference between|"
                     r"pros and cons|compare|summari[sz]e|in vivid|vivid|prose|explain like|meaning of life|"
                     r"consejos?|recomienda|recomendacion|diferencia entre|resume|resumen|que opinas|opinion)\b")),
    ("chat", 1.2, rx(QUESTION)),
    ("chat", 1.5, rx(r"\b(?:i'm|i am|i feel|i've been|me siento|estoy) (?:so |really |very |a bit |muy |un poco )?"
                     r"(?:nervous|sad|anxious|happy|stressed|tired|lonely|worried|scared|excited|bored|upset|"
                     r"nervioso|nerviosa|triste|ansioso|ansiosa|cansado|cansada|preocupado|preocupada|feliz)\b")),
    ("chat", 1.0, rx(r"\b(?:describe an?|describe the concept|tell me about|tell me (?:a|an|some|something)|"
                     r"what are|who was|who is|how many|"
                     r"how much|how long|how far|cuantos|cuantas|cuanto|quien fue|que es)\b")),
    # speech
    ("speak", 3.5, rx(rf"\b{SPEAK_VERB}\b(?:\W+\w+){{0,10}}?\W+{ALOUD}")),
    ("speak", 2.0, rx(rf"{ALOUD}")),
    ("speak", 3.0, rx(rf"\b{TTS}")),
    ("speak", 3.0, rx(r"^(?:please |now |)(?:say|speak|pronounce|announce|narrate|recite|di|dilo|pronuncia|"
                      r"narra|recita|sag|dis)\b")),
    ("speak", 1.5, rx(r"\b(?:say|di|dime)\b (?:quoted|something|the following|esto|lo siguiente)")),
    ("speak", 1.0, rx(r"\b(?:voice|voz|spoken|speech|audio)\b")),
    # transcription (with no audio attached it is still a request to transcribe)
    ("transcribe", 2.0, rx(r"\b(?:transcribe|transcription|transcript|transcribir|transcribe|transcripcion|"
                           r"speech to text|dictation|dictado|transkribiere|retranscris)\b")),
    # research / browsing
    ("research", 3.0, rx(rf"\b{SEARCH}\b(?:\W+\w+){{0,8}}?\W+(?:{WEB}|{FRESH}|information|info|informacion|"
                         rf"details|datos|hours|times|prices?|articles|reviews|news|flights?|hotels?|"
                         rf"tickets|population|results)\b")),
    ("research", 2.2, rx(rf"^(?:please |can you |could you |)(?:{SEARCH})\b")),
    ("research", 2.0, rx(rf"\b(?:search|busca|buscar|cherche|suche) (?:the |en |en el |en la |sur |im )?{WEB}")),
    ("research", 1.3, rx(rf"\b{FRESH}\b")),
    ("research", 1.0, rx(r"\b(?:who won|what happened|price of|how much (?:does|is) .{1,30} cost|ticket|"
                         r"results? of|quien gano|que paso|cuanto cuesta|a que hora abre)\b")),
    # PC control
    ("pc_control", 3.0, rx(rf"^(?:please |can you |could you |now |)(?:{OPEN})\b(?! (?:a |an |the )?"
                           rf"(?:new )?(?:file|account|conversation|discussion|mind|door|issue|ticket|pr\b))")),
    ("pc_control", 2.0, rx(rf"\b{OPEN}\b (?:the |my |el |la |mi )?(?:app |application |program |aplicacion )?"
                           rf"{APPS}\b")),
    ("pc_control", 3.5, rx(rf"\b{CLICK}\b(?:\W+\w+){{0,4}}?\W*(?:\d+\s*,\s*\d+|button|boton|icon|link|enlace|"
                           rf"at|on|en|sobre)\b")),
    ("pc_control", 3.5, rx(rf"\b{PRESS}\b (?:the |la |el )?{KEYS}\b")),
    ("pc_control", 3.0, rx(rf"\b{KEYS}\s*\+\s*\w+")),
    ("pc_control", 3.5, rx(rf"\b{SCREEN}\b")),
    ("pc_control", 3.0, rx(r"^(?:please |now |)(?:type|teclea|tape|tippe|digita)\b")),
    ("pc_control", 3.0, rx(rf"\b(?:type|write|escribe|teclea)\b .{{0,60}}\b(?:in|into|on|en) (?:the |my |el |la |"
                           rf"this |that |esta |este )?(?:focused |active |current )?{TYPE_TARGET}\b")),
    ("pc_control", 2.5, rx(r"\b(?:mouse|cursor|scroll|minimi[sz]e|maximi[sz]e|close (?:the |this )?window|"
                           r"switch (?:to )?(?:the )?window|volume|brightness|raton|desplaza|minimiza|maximiza|"
                           r"cierra (?:la )?ventana|sube el volumen|baja el volumen)\b")),
    ("pc_control", 1.0, rx(rf"\b{APPS}\b")),
    # memory
    ("memory", 4.0, rx(REMEMBER)),
    ("memory", 4.0, rx(RECALL)),
    ("memory", 4.0, rx(FORGET)),
]

#: intents that are actions on the world: a "how do I ...?" question about them is chat
ACTION_INTENTS = {"pc_control", "speak", "imagegen", "videogen"}
_HOWTO = re.compile(r"^(?:how|what|why|which|when|where|como|que|cual|por que|porque|wie|comment|quel)\b"
                    r"(?:\s+\w+){0,2}\s+(?:do|does|is|are|can|should|would|to|work|works|hace|funciona|funcionan|"
                    r"se|puedo|debo|es|son|ist|sind|kann)\b")


def score(t: Text, clause: str | None = None) -> dict[str, float]:
    """Rule evidence per intent for the instruction (or one clause of it)."""
    s = clause if clause is not None else t.head
    scores = dict.fromkeys(INTENTS, 0.0)
    for intent, weight, pattern in RULES:
        if pattern.search(s):
            scores[intent] += weight
    fresh = len(re.findall(rf"\b{FRESH}\b", s))
    if fresh > 1:  # "weather forecast ... this weekend": each sign of time-bound facts adds
        scores["research"] += 0.8 * min(fresh - 1, 2)
    if t.url:
        scores["pc_control"] = min(scores["pc_control"], 1.0)  # "open <url>" is the browser, not an app
        scores["research"] += 3.0 if re.search(r"\b(?:open|go to|visit|read|summari[sz]e|check|browse|abre|ve a|"
                                               r"visita|lee|resume|what|tell me|ouvre)\b", s) else 2.0
    if t.path:
        scores["code"] += 2.5
    if ERROR_TOKEN.search(t.original):
        scores["code"] += 2.0
        if re.search(rf"\b{EXPLAIN}\b|\bmeans?\b|\?", s):  # asking what an error message means
            scores["code"] += 1.5
    if re.search(r"[\\^$]\w|\{\d|=>|==|!=|\w\(\)|;\s*$|\bdef |\bfn |\bvar |\bconst |</?\w+>", t.original):
        scores["code"] += 1.0
    if scores["videogen"] >= 3.0:
        scores["imagegen"] = min(scores["imagegen"], 1.0)  # "an animated picture" is a video
    if scores["chat"] >= 3.5 and scores["code"] < 3.0:
        scores["code"] *= 0.5  # "write a poem about Python" is not code
    if _HOWTO.search(s) and not re.search(rf"\b{ALOUD}|^{POLITE}", s):
        for intent in ACTION_INTENTS:
            scores[intent] = min(scores[intent], 1.0)  # "how do I take a screenshot?" asks for knowledge
        scores["chat"] += 1.0
    if scores["memory"] >= 4.0:
        for intent in ("speak", "chat", "research"):
            scores[intent] = min(scores[intent], 2.0)
    return scores


# --- which tool within an intent -------------------------------------------------------


def code_tool(t: Text) -> str:
    s = t.head
    if re.search(rf"\b{EXPLAIN}\b", s) or (ERROR_TOKEN.search(t.original) and re.search(r"\?|mean|means|"
                                                                                         r"significa", s)):
        return "coder.explain"
    if re.search(rf"\b{EDIT_VERB}\b", s) and (
        t.path or re.search(r"\b(?:this|my|the existing|our|the|este|esta|mi|el|la) (?:\w+ )?(?:code|function|"
                            r"class|method|script|file|module|repo|project|codigo|funcion|clase|metodo|archivo|"
                            r"modulo|proyecto)\b", s)
        or (re.search(r"\b(?:in|en|inside|dentro de) [\w/.-]+\b", s) and t.path)):
        return "coder.edit"
    if t.path and re.search(rf"\b{EDIT_VERB}\b|\b(?:to|a)\b", s) and not re.search(r"^(?:write|create|crea|"
                                                                                     r"escribe|generate)\b", s):
        return "coder.edit"
    return "coder.generate"


def memory_tool(s: str) -> str:
    if re.search(r"\b(?:don't|do not|never|no) (?:forget|olvides)\b", s):
        return "memory.remember"
    if re.search(FORGET, s):
        return "memory.forget"
    if re.search(RECALL, s) or re.search(QUESTION, s) or s.endswith("?"):
        return "memory.recall"
    return "memory.remember"


def pc_tool(s: str) -> str:
    if re.search(rf"\b{SCREEN}\b", s):
        return "system.screenshot"
    if re.search(rf"\b{CLICK}\b", s):
        return "system.click"
    if re.search(rf"\b{PRESS}\b (?:the |la |el )?{KEYS}\b|\b{KEYS}\s*\+\s*\w+", s):
        return "system.hotkey"
    if re.search(r"^(?:please |now |)(?:type|teclea|tape|tippe|digita)\b", s) or re.search(
            rf"\b(?:type|write|escribe|teclea)\b .{{0,60}}\b(?:in|into|on|en) .{{0,20}}{TYPE_TARGET}\b", s):
        return "system.type"
    if re.search(r"\b(?:scroll|desplaza)\b", s):
        return "system.scroll"
    return "system.open_app"


def vision_tool(s: str) -> tuple[str, str]:
    """(intent, tool) for a request about an attached image."""
    if re.search(rf"\b(?:html|css|react|vue|svelte|angular|component|componente|code|codigo|website|web ?page|"
                 rf"landing page|pagina(?: web)?|frontend|ui|layout|tailwind|flutter|swiftui|jsx|markup|"
                 rf"{LANGS})\b", s) and re.search(rf"\b(?:{CODE_VERB}|turn|convert|make|build|implement|"
                                                  rf"recreate|reproduce|convierte|transforma|haz|construye|"
                                                  rf"maquetar?|into|en)\b", s):
        return "code", "vision.describe+coder.generate"
    if re.search(r"\b(?:make (?:it|this|the|him|her|them)|change|remove|replace|add|erase|turn (?:it|this|the)|"
                 r"colou?ri[sz]e|black and white|grayscale|blur|sharpen|crop|upscale|enhance|retouch|restyle|"
                 r"in the style of|as a (?:painting|cartoon|sketch)|look like|background|edit|recolor|"
                 r"cambia|quita|elimina|anade|agrega|pon|ponle|haz que|hazla|hazlo|convierte(?:la|lo)? en "
                 r"(?:un|una) (?:dibujo|pintura|acuarela|caricatura)|blanco y negro|fondo|mejora|recorta|"
                 r"difumina|edita)\b", s) and not re.search(r"\?$", s):
        return "imagegen", "imagegen.edit"
    if re.search(r"\b(?:extract|copy|transcribe|read|ocr|type out|write out|get) (?:out |me |all |the |every )*"
                 r"(?:\w+ )?(?:text|words|writing|numbers|handwriting|handwritten|note|receipt|sign|"
                 r"menu|document|page|table|label)\b|\bocr\b|\btext (?:in|on|from)\b|what does (?:the |this |it )?"
                 r"(?:\w+ )?(?:say|read)|extrae|copia el texto|transcribe el texto|texto de|lee el texto|"
                 r"que dice|que pone", s):
        return "vision", "vision.ocr"
    if re.search(r"\b(?:describe|description|caption|what(?:'s| is) (?:in|on|this|that|happening)|what do you see|"
                 r"tell me about (?:this|the) (?:image|picture|photo)|what am i looking at|explain (?:this|the) "
                 r"(?:image|picture|photo|painting|chart)|describe|describeme|que hay|que ves|que es esto|"
                 r"que se ve|decris|beschreibe)\b", s) and not re.search(r"\b(?:how many|which|what (?:color|"
                                                                         r"colour|kind|type|breed|time)|"
                                                                         r"cuant|cual|que (?:raza|color|tipo))",
                                                                         s):
        return "vision", "vision.describe"
    return "vision", "vision.answer"


def wants_speech(s: str) -> bool:
    return bool(re.search(rf"{ALOUD}|\b(?:read (?:it|them|that|this) (?:to me|for me)|read me|say it|"
                          rf"speak it|leemelo|dimelo en voz)\b", s))


def wants_description(s: str) -> bool:
    return bool(re.search(r"\b(?:describe|description|descri\w+|tell me (?:about|what)|what(?:'s| is) (?:on|in)|"
                          r"what (?:you see|it shows|is there)|explain what|que (?:ves|hay|se ve)|dime que)\b", s))


def wants_memory(s: str) -> bool:
    return bool(re.search(r"\b(?:remember|save|store|note|memori[sz]e|keep|recuerda|recuerdalo|recuerdala|"
                          r"guarda|guardalo|apunta|anota|memoriza|merke|retiens)\b", s))


def wants_translation(s: str) -> bool:
    return bool(re.search(r"\b(?:translate|translation|traduce|traducelo|traducir|traduis|ubersetze|traduza|"
                          r"into (?:english|spanish|french|german)|al (?:ingles|espanol|frances|aleman))\b", s))


def wants_summary(s: str) -> bool:
    return bool(re.search(r"\b(?:summari[sz]e|sum up|summary|resume|resumelo|resumen|key points|puntos clave|"
                          r"action items|minutes)\b", s))
