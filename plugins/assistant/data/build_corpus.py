"""Builds ``routing_corpus.jsonl``, the router's training corpus, from templates.

    python plugins/assistant/data/build_corpus.py      # rewrites routing_corpus.jsonl (seeded)
    python plugins/assistant/data/build_corpus.py --wide   # appends the widening rows (ids w-NNNN)
    python plugins/assistant/data/build_corpus.py --written   # written_requests.txt -> routing_written.jsonl

Each line is in the dev set's format (``id``, ``text``, ``attachments``, ``intent``,
``steps``) plus ``parts``: the request's clauses, each with the tool it asks for (the unit
the classifier learns). Variety comes from many phrasings per tool in six languages and
from transformations applied at random: typos, chat slang, indirect wrappers ("I'm
cooking, could you..."), spoken-style transcripts, code and URLs inside sentences, and
distractors (a word of another intent in a request that is not that intent).

Nothing here was copied from the held-out set (``tests/routing_heldout.jsonl``) or the
dev set; both stay out of training.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).with_name("routing_corpus.jsonl")
R = random.Random(20261129)


def pick(xs):
    return R.choice(xs)


# --- slot fillers -----------------------------------------------------------------------

SUBJ_EN = [
    "a wolf howling at a pink moon",
    "an old tram in the rain",
    "a corgi in a space suit",
    "a bowl of ramen",
    "a treehouse village",
    "a robot gardener",
    "a koi pond in autumn",
    "a viking ship in a storm",
    "a tiny mouse reading a book",
    "a neon noodle bar",
    "a snowy mountain cabin",
    "two foxes playing",
    "a steampunk owl",
    "a desert highway at night",
    "a hot air balloon festival",
    "a sleepy sloth",
    "a futuristic train station",
    "a vase of sunflowers",
    "a castle made of candy",
    "an underwater city",
    "a penguin on a skateboard",
    "a cozy library with a fireplace",
    "a lemon tree in a pot",
    "a jazz trio in a smoky club",
    "a bee on a lavender flower",
    "a medieval market",
    "a dragon egg",
    "my cat as a superhero",
    "a lighthouse keeper",
    "a field of tulips",
    "a polar bear cub",
    "a cyberpunk samurai",
    "a bakery storefront",
    "a giant squid attacking a boat",
]
SUBJ_ES = [
    "un lobo aullando a la luna",
    "un tranvía antiguo bajo la lluvia",
    "un perro astronauta",
    "un plato de paella",
    "un pueblo en los árboles",
    "un robot jardinero",
    "un barco vikingo en una tormenta",
    "un ratón leyendo un libro",
    "una cabaña en la nieve",
    "dos zorros jugando",
    "un búho steampunk",
    "una carretera en el desierto de noche",
    "un festival de globos",
    "un perezoso dormido",
    "un castillo de caramelo",
    "una ciudad submarina",
    "un pingüino en monopatín",
    "una biblioteca acogedora",
    "un limonero en una maceta",
    "un mercado medieval",
    "un huevo de dragón",
    "mi gato como superhéroe",
    "un campo de girasoles",
    "un osito polar",
    "una panadería de barrio",
    "un faro en la costa",
]
SUBJ_FR = ["un loup sous la lune", "un tramway sous la pluie", "un château de bonbons", "un renard qui dort"]
SUBJ_DE = [
    "einen Wolf im Mondlicht",
    "eine alte Straßenbahn im Regen",
    "ein Schloss aus Süßigkeiten",
    "einen schlafenden Fuchs",
]
SUBJ_IT = ["un lupo sotto la luna", "un tram nella pioggia", "un castello di caramelle", "una volpe addormentata"]
SUBJ_PT = ["um lobo sob a lua", "um elétrico antigo à chuva", "um castelo de doces", "uma raposa a dormir"]
STYLE = [
    "",
    "",
    ", watercolor",
    ", pixel art",
    ", photorealistic",
    " in anime style",
    ", low poly",
    ", oil painting",
    ", flat vector",
    " as a pencil sketch",
    ", isometric",
    ", 80s synthwave colors",
]
BRANDS = [
    "Blue Fern Yoga",
    "Pablo's Tacos",
    "Nordlicht Tech",
    "Green Spoon",
    "Atlas Bikes",
    "Moonbeam Tea",
    "Casa Olivo",
    "Byte Club",
    "Lumen Studio",
    "Salty Dog Surf",
]
PLACES = [
    "Berlin",
    "Madrid",
    "Tokyo",
    "Chicago",
    "Lisbon",
    "Valencia",
    "Nairobi",
    "Toronto",
    "Sydney",
    "Oslo",
    "Buenos Aires",
    "Mexico City",
    "Naples",
    "Porto",
    "Seattle",
    "Cape Town",
    "Bogotá",
    "Munich",
]
TOPICS_FRESH = [
    "the Artemis program",
    "the central bank interest rate",
    "the teachers' strike",
    "the new Zelda game",
    "the elections in Brazil",
    "the Tour de France",
    "the wildfire in California",
    "Nvidia's stock",
    "the UN climate summit",
    "the Eurovision results",
    "the Mars rover",
    "the transfer window",
]
CODE_LANGS = [
    "python",
    "Python",
    "javascript",
    "JS",
    "typescript",
    "rust",
    "go",
    "java",
    "C#",
    "kotlin",
    "bash",
    "ruby",
    "php",
    "swift",
    "C++",
    "SQL",
    "lua",
]
CODE_TASKS = [
    "reads a CSV and prints the average of each column",
    "checks if a number is prime",
    "merges two sorted lists",
    "downloads a file with retries",
    "validates an email address",
    "converts celsius to fahrenheit",
    "counts word frequencies in a text file",
    "flattens a nested list",
    "generates a random password",
    "parses command-line arguments",
    "renames photos by date taken",
    "computes the fibonacci sequence",
    "finds duplicate files in a folder",
    "sends a slack message",
    "resizes all images in a directory",
    "implements an LRU cache",
    "pings a URL every minute",
    "sorts users by signup date",
    "calculates compound interest",
    "deduplicates rows in a table",
]
CODE_TASKS_ES = [
    "lea un CSV y calcule la media",
    "compruebe si un número es primo",
    "ordene una lista de fechas",
    "descargue un archivo con reintentos",
    "valide un correo electrónico",
    "cuente palabras en un texto",
    "genere contraseñas aleatorias",
    "renombre fotos por fecha",
    "calcule el factorial",
    "elimine duplicados de una lista",
    "convierta grados a fahrenheit",
    "envíe un correo",
]
FILES = [
    "app.py",
    "src/main.rs",
    "utils/dates.py",
    "server.js",
    "api/views.py",
    "lib/parser.ts",
    "Makefile",
    "cmd/root.go",
    "models/order.rb",
    "index.php",
    "src/App.vue",
    "build.gradle",
    "scripts/deploy.sh",
    "core/cache.py",
    "components/Navbar.jsx",
    "tests/test_auth.py",
    "pkg/store/store.go",
    "config.yaml",
]
EDIT_TASKS = [
    "fix the off by one error in {f}",
    "add error handling to {f}",
    "refactor {f} into smaller functions",
    "make the retry logic in {f} exponential",
    "rename get_data to fetch_orders in {f}",
    "add logging to {f}",
    "convert {f} to use async/await",
    "remove the unused imports from {f}",
    "add input validation in {f}",
    "update {f} so it reads the port from an env var",
    "the function in {f} crashes on empty input, fix it",
    "clean up {f}, it's a mess",
    "add type annotations to {f}",
    "{f} leaks file handles, patch it",
    "migrate {f} to the new API",
    "write docstrings for {f}",
    "replace the print calls in {f} with proper logging",
    "optimise the nested loops in {f}",
    "split {f} into two modules",
    "add a --verbose flag to {f}",
]
EDIT_TASKS_ES = [
    "arregla el error en {f}",
    "añade manejo de errores a {f}",
    "refactoriza {f}",
    "renombra la variable x a total en {f}",
    "añade logs a {f}",
    "quita los imports que sobran en {f}",
    "haz que {f} use async",
    "{f} falla con la lista vacía, corrígelo",
    "optimiza {f}",
    "añade comentarios a {f}",
    "actualiza {f} para leer el puerto de una variable de entorno",
]
SNIPPETS = [
    "`x = [i**2 for i in range(10)]`",
    "`SELECT * FROM users WHERE age > 30`",
    "`arr.map(x => x * 2)`",
    '`fn main() { println!("hi"); }`',
    "`git cherry-pick abc123`",
    "`sudo chown -R $USER .`",
    "`df.groupby('a').sum()`",
    "`docker run -p 8080:80 nginx`",
    "`while True: pass`",
    "`let {a, ...rest} = obj`",
    "`awk '{print $2}' file.txt`",
    "`grep -rn TODO .`",
    "`def f(*args, **kw): ...`",
    "`async fn f() {}`",
    "`[[ -z $VAR ]] && exit 1`",
    "`kubectl get pods -A`",
    "`^\\w+@\\w+\\.com$`",
    "`std::move(v)`",
]
ERRORS = [
    "KeyError: 'name'",
    "TypeError: undefined is not a function",
    "IndexError: list index out of range",
    "ValueError: invalid literal for int() with base 10",
    "java.lang.NullPointerException",
    "error: cannot find symbol",
    "ECONNREFUSED 127.0.0.1:5432",
    "RecursionError: maximum recursion depth exceeded",
    "AttributeError: 'str' object has no attribute 'append'",
    "panic: runtime error: index out of range",
    "Uncaught SyntaxError: Unexpected token '<'",
    "CORS policy: No 'Access-Control-Allow-Origin' header",
    "fatal: not a git repository",
    "ImportError: cannot import name 'x'",
    "Segmentation fault",
    "UnicodeDecodeError: 'utf-8' codec can't decode byte",
]
APPS = [
    "Spotify",
    "the calculator",
    "Notepad",
    "VS Code",
    "Chrome",
    "Firefox",
    "Slack",
    "Zoom",
    "Excel",
    "Word",
    "the terminal",
    "Discord",
    "Steam",
    "GIMP",
    "OBS",
    "Outlook",
    "the file explorer",
    "settings",
    "Telegram",
    "Blender",
    "VLC",
    "the calendar",
    "Teams",
    "Photoshop",
]
APPS_ES = [
    "Spotify",
    "la calculadora",
    "el bloc de notas",
    "VS Code",
    "Chrome",
    "el navegador",
    "Excel",
    "Word",
    "la terminal",
    "el explorador de archivos",
    "la configuración",
    "Telegram",
    "Zoom",
    "el calendario",
]
KEYS = [
    "ctrl+c",
    "ctrl+v",
    "ctrl+s",
    "alt+tab",
    "ctrl+shift+esc",
    "cmd+space",
    "ctrl+p",
    "alt+f4",
    "ctrl+alt+t",
    "shift+tab",
    "ctrl+f",
    "ctrl+w",
    "escape",
    "enter",
    "f5",
    "ctrl+a",
    "win+d",
    "cmd+q",
    "ctrl+shift+n",
]
FACTS_EN = [
    "my gym locker is 214",
    "my mom's birthday is on June 3rd",
    "I'm lactose intolerant",
    "the spare key is under the blue pot",
    "my flight to Rome is on the 14th",
    "my bike lock code is 0912",
    "I prefer aisle seats",
    "my manager is called Tomás",
    "the garage door code is 7788",
    "my daughter's teacher is Mrs. Olsen",
    "I take my coffee black",
    "our anniversary is October 2",
    "the dog's vet is Dr. Patel",
    "my license plate is 4TRB221",
    "I'm on the night shift next week",
    "my landlord's number is 555-0142",
    "I parked on level 4, spot B12",
    "my shoe size is 43",
    "the recycling goes out on Tuesdays",
    "my son is allergic to penicillin",
]
FACTS_ES = [
    "mi taquilla del gimnasio es la 214",
    "el cumpleaños de mi madre es el 3 de junio",
    "soy intolerante a la lactosa",
    "la llave de repuesto está bajo la maceta azul",
    "mi vuelo a Roma es el día 14",
    "el código del candado es 0912",
    "mi jefa se llama Carmen",
    "el código del garaje es 7788",
    "tomo el café solo",
    "aparqué en la planta 4",
    "la basura se saca los martes",
    "mi hijo es alérgico a la penicilina",
    "el veterinario del perro es el doctor Ruiz",
]
RECALL_EN = [
    "what's my gym locker number",
    "when is my mom's birthday",
    "where's the spare key",
    "what did I say about my flight",
    "what's the garage code again",
    "who's my daughter's teacher",
    "what's my license plate",
    "where did I park",
    "what do you know about my allergies",
    "which day does the recycling go out",
    "what's my landlord's number",
    "how do I take my coffee",
]
RECALL_ES = [
    "cuál es mi taquilla",
    "cuándo es el cumple de mi madre",
    "dónde está la llave de repuesto",
    "qué te dije de mi vuelo",
    "cuál era el código del garaje",
    "dónde aparqué",
    "cómo se llama mi jefa",
    "qué día se saca la basura",
]
FORGET_EN = [
    "my gym locker number",
    "my old address",
    "what I told you about my ex",
    "my landlord's number",
    "the garage code",
    "everything about my old job",
    "my previous phone number",
    "my license plate",
]
FORGET_ES = [
    "mi antigua dirección",
    "lo que te conté de mi ex",
    "el código del garaje",
    "mi número antiguo",
    "lo de mi antiguo trabajo",
]
SAY_EN = [
    "dinner is ready",
    "welcome to the show, everybody",
    "please fasten your seatbelts",
    "the next stop is Central Station",
    "happy birthday, Sam",
    "you have three new messages",
    "break time is over",
    "the store closes in ten minutes",
    "congratulations on the new job",
    "drink some water",
    "the password has been reset",
    "knock knock, who's there",
]
SAY_ES = [
    "la cena está lista",
    "bienvenidos al programa",
    "la próxima parada es Atocha",
    "feliz cumpleaños, Sara",
    "tienes tres mensajes nuevos",
    "la tienda cierra en diez minutos",
    "enhorabuena por el trabajo",
]
CHAT_EN = [
    "how do vaccines work",
    "what's the tallest mountain in Africa",
    "give me a recipe for pancakes",
    "what's the difference between a crocodile and an alligator",
    "how do I get better at chess",
    "why do cats purr",
    "explain inflation like I'm five",
    "what year did the Berlin wall fall",
    "how many ounces in a liter",
    "what are some good names for a bakery",
    "is a tomato a fruit",
    "how do solar panels work",
    "what should I pack for a weekend hike",
    "how do I deal with a rude coworker",
    "what is the meaning of the word 'serendipity'",
    "how long should I boil an egg",
    "what's a good stretch for lower back pain",
    "who wrote Pride and Prejudice",
    "what is quantum entanglement",
    "how can I save money on groceries",
    "what's the best way to learn a language",
    "why is the ocean salty",
    "how does a refrigerator keep things cold",
    "give me three fun facts about space",
    "what is a black hole",
    "how do I politely decline an invitation",
    "summarize the story of the Odyssey",
    "what's the difference between affect and effect",
    "how many players are on a rugby team",
    "how do I make my sourdough rise more",
    "what's the square root of 144",
    "how does compound interest work",
    "how do airplanes stay in the air",
    "what is stoicism",
    "how does a camera lens focus",
    "what do pandas eat",
    "can you help me plan a birthday party for a 7 year old",
    "what's the origin of halloween",
    "how do I fold a fitted sheet",
    "rate my idea: a cafe for dogs",
]
CHAT_WRITE_EN = [
    "write a poem about {x}",
    "write a short story about {x}",
    "compose a haiku about {x}",
    "give me a limerick about {x}",
    "write a birthday message for my coworker",
    "draft a polite complaint letter about {x}",
    "write a toast about {x}",
    "make up a riddle about {x}",
    "write song lyrics about {x}",
    "write a product description for {x}",
    "describe {x} in two vivid paragraphs",
    "write a bedtime story featuring {x}",
]
CHAT_ES = [
    "¿cómo funcionan las vacunas?",
    "¿cuál es la montaña más alta de África?",
    "dame una receta de tortilla",
    "¿por qué ronronean los gatos?",
    "explícame la inflación como si tuviera cinco años",
    "¿en qué año cayó el muro de Berlín?",
    "¿el tomate es una fruta?",
    "¿cómo funcionan las placas solares?",
    "¿qué llevo para una excursión de un día?",
    "¿qué significa 'ojalá'?",
    "¿cuánto hay que hervir un huevo?",
    "¿quién escribió Don Quijote?",
    "¿qué es un agujero negro?",
    "¿cómo ahorro en la compra?",
    "¿cuál es la mejor forma de aprender inglés?",
    "¿por qué el mar es salado?",
    "¿qué comen los pandas?",
    "ayúdame a organizar un cumpleaños infantil",
    "¿qué diferencia hay entre 'porque' y 'por qué'?",
    "dame consejos para una entrevista de trabajo",
    "¿cómo vuela un avión?",
    "¿qué es el estoicismo?",
    "estoy triste hoy",
    "¿me recomiendas un libro de ciencia ficción?",
    "¿cuántos litros tiene un galón?",
]
CHAT_WRITE_ES = [
    "escribe un poema sobre {x}",
    "escribe un cuento corto sobre {x}",
    "hazme un haiku sobre {x}",
    "escribe una carta formal quejándome de {x}",
    "inventa un chiste sobre {x}",
    "describe {x} en dos párrafos",
]
CHAT_OTHER = [
    "comment fonctionnent les vaccins ?",
    "pourquoi le ciel est bleu ?",
    "écris un poème sur {x}",
    "donne-moi une recette de crêpes",
    "wie funktionieren Impfstoffe?",
    "schreib ein Gedicht über {x}",
    "warum ist der Himmel blau?",
    "gib mir ein Rezept für Pfannkuchen",
    "come funzionano i vaccini?",
    "scrivi una poesia su {x}",
    "perché il cielo è blu?",
    "como funcionam as vacinas?",
    "escreve um poema sobre {x}",
    "porque é que o céu é azul?",
    "quem escreveu Os Lusíadas?",
    "chi ha scritto la Divina Commedia?",
    "qui a écrit Les Misérables ?",
    "wer hat Faust geschrieben?",
]
CHAT_SMALL = [
    "thanks!",
    "thx",
    "ty so much",
    "ok cool",
    "haha nice",
    "good night",
    "hello there",
    "hi!",
    "you rock",
    "that's awesome",
    "gracias!",
    "vale, gracias",
    "jaja",
    "buenos días",
    "hola",
    "merci !",
    "danke!",
    "grazie",
    "obrigada",
    "lol",
    "hmm interesting",
    "nvm",
    "ok",
    "perfecto",
]
TRANSLATE = [
    "translate '{p}' into French",
    "how do you say '{p}' in German",
    "translate this to Spanish: {p}",
    "traduce '{p}' al inglés",
    "¿cómo se dice '{p}' en francés?",
    "übersetze '{p}' ins Englische",
    "traduis '{p}' en espagnol",
    "what's '{p}' in Japanese",
]
PHRASES = [
    "where is the nearest pharmacy",
    "I would like a table for two",
    "the meeting is cancelled",
    "nice to meet you",
    "how much does this cost",
    "me gustaría un café",
    "wo ist der Bahnhof",
]
URLS = [
    "https://example.com/news/2026/budget",
    "https://blog.example.org/post/rust-async",
    "www.wikipedia.org",
    "https://arxiv.org/abs/2401.01234",
    "https://www.theverge.com/reviews",
    "https://status.github.com",
    "https://example.es/noticias/hoy",
    "news.ycombinator.com",
    "https://www.lemonde.fr/sciences/",
    "https://developer.mozilla.org/en-US/docs/Web/CSS/grid",
    "https://example.net/recipes/lasagna",
]


# --- per-tool phrasings: each returns (text, attachments) ------------------------------


def imagegen_generate():
    lang = _lang()
    if lang == "en":
        t = pick(
            [
                "generate an image of {s}",
                "draw {s}",
                "make a picture of {s}",
                "create an illustration of {s}",
                "paint {s}",
                "render {s}",
                "i want a pic of {s}",
                "can you draw {s}",
                "show me a drawing of {s}",
                "design a logo for {b}",
                "make a poster for {b}",
                "create an avatar of {s}",
                "design a sticker of {s}",
                "make me a wallpaper with {s}",
                "sketch {s}",
                "give me an image of {s}",
                "could you whip up a picture of {s}",
                "need art of {s} for my blog",
                "a drawing of {s} please",
                "make a meme image with {s}",
                "create a book cover showing {s}",
                "imagine {s} and draw it",
                "design an icon of {s}",
                "make a birthday card picture with {s}",
                "illustrate {s}",
            ]
        )
        return t.format(s=pick(SUBJ_EN) + pick(STYLE), b=pick(BRANDS)), []
    if lang == "es":
        t = pick(
            [
                "genera una imagen de {s}",
                "dibuja {s}",
                "hazme un dibujo de {s}",
                "crea una ilustración de {s}",
                "pinta {s}",
                "quiero una foto de {s}",
                "¿puedes dibujar {s}?",
                "diseña un logo para {b}",
                "haz un cartel para {b}",
                "créame un avatar de {s}",
                "necesito una imagen de {s}",
                "hazme un fondo de pantalla con {s}",
                "ilustra {s}",
                "dibújame {s}",
                "genérame una imagen de {s}",
            ]
        )
        return t.format(s=pick(SUBJ_ES), b=pick(BRANDS)), []
    return _other(
        lang,
        {
            "fr": ["génère une image de {s}", "dessine {s}", "crée un logo pour {b}"],
            "de": ["erstelle ein Bild von {s}", "zeichne {s}", "mal mir {s}", "entwirf ein Logo für {b}"],
            "it": ["genera un'immagine di {s}", "disegna {s}", "crea un logo per {b}"],
            "pt": ["gera uma imagem de {s}", "desenha {s}", "cria um logotipo para {b}"],
        },
        s={"fr": SUBJ_FR, "de": SUBJ_DE, "it": SUBJ_IT, "pt": SUBJ_PT},
    ), []


def video_generate():
    lang = _lang()
    if lang == "en":
        t = pick(
            [
                "make a video of {s}",
                "generate a short clip of {s}",
                "animate {s}",
                "create an animation of {s}",
                "render a 5 second video of {s}",
                "i need a clip of {s}",
                "produce a looping video of {s}",
                "make a timelapse of {s}",
                "create a short film of {s}",
                "vid of {s} pls",
                "can you make {s} move, like a little video",
                "generate footage of {s}",
                "make an animated gif of {s}",
                "turn {s} into a short animation",
                "make an intro video for {b}",
            ]
        )
        return t.format(s=pick(SUBJ_EN), b=pick(BRANDS)), []
    if lang == "es":
        t = pick(
            [
                "haz un vídeo de {s}",
                "genera un clip corto de {s}",
                "anima {s}",
                "crea una animación de {s}",
                "quiero un video de {s}",
                "hazme un vídeo corto de {s}",
                "renderiza un vídeo de {s}",
                "genera un timelapse de {s}",
                "crea un gif animado de {s}",
            ]
        )
        return t.format(s=pick(SUBJ_ES), b=pick(BRANDS)), []
    return _other(
        lang,
        {
            "fr": ["fais une vidéo de {s}", "crée une animation de {s}"],
            "de": ["mach ein Video von {s}", "erstelle eine Animation von {s}"],
            "it": ["fai un video di {s}", "crea un'animazione di {s}"],
            "pt": ["faz um vídeo de {s}", "cria uma animação de {s}"],
        },
        s={"fr": SUBJ_FR, "de": SUBJ_DE, "it": SUBJ_IT, "pt": SUBJ_PT},
    ), []


def voice_speak():
    lang = _lang()
    if lang == "en":
        p = pick(SAY_EN)
        t = pick(
            [
                "say '{p}' out loud",
                "read this aloud: {p}",
                "speak: {p}",
                'can you say "{p}"',
                "read out loud: {p}",
                "convert to speech: {p}",
                "text to speech: {p}",
                "narrate this: {p}",
                "say {p} in a deep voice",
                "i'm cooking, read me this: {p}",
                "my eyes are tired, read this to me: {p}",
                "make an audio clip saying '{p}'",
                "announce '{p}'",
                "pronounce '{p}'",
                'record yourself saying "{p}"',
                "voice over: {p}",
                "read it out for me: {p}",
                "say it out loud: {p}",
                "tell everyone out loud that {p}",
            ]
        )
        return t.format(p=p), []
    if lang == "es":
        p = pick(SAY_ES)
        t = pick(
            [
                "di '{p}' en voz alta",
                "lee en voz alta: {p}",
                "léeme esto: {p}",
                "pasa a voz: {p}",
                "dilo en alto: {p}",
                "narra esto: {p}",
                "estoy cocinando, léemelo: {p}",
                "pronuncia '{p}'",
                "graba un audio diciendo '{p}'",
                "di con voz alegre: {p}",
            ]
        )
        return t.format(p=p), []
    return _other(
        lang,
        {
            "fr": ["lis à voix haute : {p}", "dis '{p}'"],
            "de": ["lies laut vor: {p}", "sag '{p}'"],
            "it": ["leggi ad alta voce: {p}", "di' '{p}'"],
            "pt": ["lê em voz alta: {p}", "diz '{p}'"],
        },
        p={k: SAY_EN for k in ("fr", "de", "it", "pt")},
    ), []


def browser_research():
    lang = _lang()
    if lang == "en":
        t = pick(
            [
                "what's the weather in {c} tomorrow",
                "is it going to rain in {c} this weekend",
                "latest news about {n}",
                "search the web for {n}",
                "look up {n}",
                "any updates on {n}?",
                "who won the match between {c} and {c2} yesterday",
                "what time does the {c} museum open today",
                "is the {c} airport open right now",
                "current exchange rate euro to dollar",
                "find reviews of the {p} and cite sources",
                "how much does the {p} cost now",
                "what happened with {n} today",
                "check if trains to {c} are delayed",
                "google {n}",
                "research {n} and give me sources",
                "find out when the next {c} marathon is",
                "what are the opening hours of the {c} zoo",
                "what's the traffic like in {c} right now",
                "are flights to {c} cancelled because of the storm",
                "find me cheap hotels in {c} next month",
                "what's {n} about, any news?",
                "browse for the best {p} deals",
                "is the {p} out yet",
                "how's the stock market doing today",
                "what are the top headlines today",
                "when does the {c} christmas market open this year",
                "is there a strike in {c} today",
                "did the {p} get good reviews",
                "find the phone number of a plumber in {c}",
                "what's on at the cinema in {c} tonight",
            ]
        )
        return t.format(c=pick(PLACES), c2=pick(PLACES), n=pick(TOPICS_FRESH), p=pick(PRODUCTS)), []
    if lang == "es":
        t = pick(
            [
                "¿qué tiempo hará en {c} mañana?",
                "¿va a llover en {c} el fin de semana?",
                "últimas noticias de {n}",
                "busca en internet {n}",
                "busca información sobre {n}",
                "¿quién ganó el partido de ayer?",
                "¿a qué hora abre el museo de {c} hoy?",
                "¿está abierto el aeropuerto de {c}?",
                "¿a cuánto está el euro hoy?",
                "busca reseñas del {p}",
                "¿cuánto cuesta ahora el {p}?",
                "¿hay retrasos en los trenes a {c}?",
                "averigua cuándo es el maratón de {c}",
                "¿cómo está el tráfico en {c} ahora?",
                "encuéntrame hoteles baratos en {c}",
                "¿hay huelga hoy en {c}?",
                "¿qué ponen en el cine de {c} esta noche?",
                "investiga {n} con fuentes",
            ]
        )
        return t.format(c=pick(PLACES), n=pick(TOPICS_FRESH), p=pick(PRODUCTS)), []
    return _other(
        lang,
        {
            "fr": [
                "quel temps fera-t-il à {c} demain ?",
                "cherche les dernières nouvelles sur {n}",
                "le musée de {c} est ouvert aujourd'hui ?",
            ],
            "de": [
                "wie ist das Wetter morgen in {c}?",
                "suche die neuesten Nachrichten über {n}",
                "ist das Museum in {c} heute geöffnet?",
            ],
            "it": ["che tempo fa a {c} domani?", "cerca le ultime notizie su {n}"],
            "pt": ["como está o tempo em {c} amanhã?", "procura as últimas notícias sobre {n}"],
        },
        c={k: PLACES for k in ("fr", "de", "it", "pt")},
        n={k: TOPICS_FRESH for k in ("fr", "de", "it", "pt")},
    ), []


PRODUCTS = [
    "Pixel 10",
    "Steam Deck 2",
    "Kindle Scribe",
    "Tesla Model Y",
    "iPad Air",
    "Framework 13",
    "Dyson V15",
    "Garmin Forerunner 965",
    "MacBook Air M4",
    "PlayStation 6",
]


def browser_open():
    u = pick(URLS)
    t = pick(
        [
            "open {u} and summarize it",
            "what does {u} say",
            "go to {u}",
            "read {u} and give me the key points",
            "check {u} for me",
            "tl;dr of {u} pls",
            "visit {u} and tell me what's new",
            "summarise this: {u}",
            "abre {u} y resúmelo",
            "entra en {u} y dime qué pone",
            "ouvre {u} et résume",
            "öffne {u}",
            "apri {u} e riassumi",
            "abre {u} e resume",
            "can you skim {u}",
            "whats on {u} today",
            "my friend sent me {u}, what's it about?",
        ]
    )
    return t.format(u=u), []


def coder_generate():
    lang = _lang()
    if lang == "en":
        t = pick(
            [
                "write a {l} function that {t}",
                "write a {l} script that {t}",
                "code something in {l} that {t}",
                "i need a {l} snippet that {t}",
                "implement a {l} class that {t}",
                "create a {l} program that {t}",
                "gimme {l} code that {t}",
                "how would I write a {l} function that {t}? just the code",
                "build a small {l} cli that {t}",
                "write a regex that matches phone numbers",
                "make a REST endpoint in {l} that returns the server time",
                "write a SQL query that {t}",
                "generate a dockerfile for a {l} app",
                "write a github actions workflow that runs {l} tests",
                "write unit tests in {l} for a function that {t}",
                "scaffold a {l} project with a web server",
            ]
        )
        return t.format(l=pick(CODE_LANGS), t=pick(CODE_TASKS)), []
    if lang == "es":
        t = pick(
            [
                "escribe una función en {l} que {t}",
                "hazme un script de {l} que {t}",
                "programa en {l} algo que {t}",
                "necesito código {l} que {t}",
                "crea una clase en {l} que {t}",
                "escribe una consulta SQL que {t}",
                "genera tests en {l} para una función que {t}",
            ]
        )
        return t.format(l=pick(CODE_LANGS), t=pick(CODE_TASKS_ES)), []
    return _other(
        lang,
        {
            "fr": ["écris une fonction {l} qui {t}", "écris un script {l} qui {t}"],
            "de": ["schreib eine {l}-Funktion, die {t}", "schreibe ein {l}-Skript, das {t}"],
            "it": ["scrivi una funzione {l} che {t}"],
            "pt": ["escreve uma função em {l} que {t}"],
        },
        l={k: CODE_LANGS for k in ("fr", "de", "it", "pt")},
        t={k: CODE_TASKS for k in ("fr", "de", "it", "pt")},
    ), []


def coder_edit():
    f = pick(FILES)
    if R.random() < 0.7:
        return pick(EDIT_TASKS).format(f=f), []
    return pick(
        [
            *EDIT_TASKS_ES,
            "corrige le bug dans {f}",
            "behebe den Fehler in {f}",
            "correggi il bug in {f}",
            "corrige o erro em {f}",
            "füge Logging zu {f} hinzu",
        ]
    ).format(f=f), []


def coder_explain():
    lang = _lang()
    if lang == "en":
        t = pick(
            [
                "what does {s} do",
                "explain {s}",
                "why do i get {e}",
                "what does this error mean: {e}",
                "i keep getting {e}, what's going on?",
                "can you explain this code: {s}",
                "walk me through {s}",
                "what is {s} doing exactly",
                "my build fails with {e}, why?",
                "help me understand {s}",
                "eli5 this: {s}",
                "what's wrong here: {s}",
                "explain how recursion works in {l} with an example",
                "what's the difference between == and === in js",
                "what does the yield keyword do in python",
            ]
        )
        return t.format(s=pick(SNIPPETS), e=pick(ERRORS), l=pick(CODE_LANGS)), []
    if lang == "es":
        t = pick(
            [
                "¿qué hace {s}?",
                "explícame {s}",
                "¿por qué me sale {e}?",
                "¿qué significa este error: {e}?",
                "no entiendo este código: {s}",
                "me da {e}, ¿qué pasa?",
                "explica qué hace {s}",
            ]
        )
        return t.format(s=pick(SNIPPETS), e=pick(ERRORS)), []
    return _other(
        lang,
        {
            "fr": ["que fait {s} ?", "pourquoi j'ai l'erreur {e} ?"],
            "de": ["was macht {s}?", "warum bekomme ich {e}?"],
            "it": ["cosa fa {s}?", "perché ricevo {e}?"],
            "pt": ["o que faz {s}?", "porque dá {e}?"],
        },
        s={k: SNIPPETS for k in ("fr", "de", "it", "pt")},
        e={k: ERRORS for k in ("fr", "de", "it", "pt")},
    ), []


def assistant_chat():
    r = R.random()
    if r < 0.08:
        return pick(CHAT_SMALL), []
    if r < 0.16:
        return pick(TRANSLATE).format(p=pick(PHRASES)), []
    if r < 0.26:
        return pick(CHAT_OTHER).format(x=pick(["el mar", "autumn", "la lune", "den Winter", "il mare", "o amor"])), []
    if r < 0.44:
        if R.random() < 0.7:
            return pick(CHAT_WRITE_EN).format(x=pick(SUBJ_EN)), []
        return pick(CHAT_WRITE_ES).format(x=pick(SUBJ_ES)), []
    if r < 0.62:
        return pick(CHAT_ES), []
    if r < 0.75:
        return pick(DISTRACT_CHAT), []
    return pick(CHAT_EN), []


# Requests that mention another intent's words but are chat: knowledge, not action.
DISTRACT_CHAT = [
    "explain how diffusion models generate pictures",
    "how do text to speech voices sound so real",
    "what's the best camera for taking photos of birds",
    "how do video codecs compress movies",
    "why do some people remember their dreams",
    "how does google rank search results",
    "how do i take a screenshot on android",
    "what makes a good logo design",
    "how is an animated film made",
    "what's the history of the printing press",
    "tips for reading aloud to kids",
    "how do I open a bank account abroad",
    "why is python called python",
    "is learning to code worth it",
    "how do I remember names better",
    "what's a good keyboard for programming",
    "how do weather forecasts work",
    "how do I say no to my boss politely",
    "¿cómo funcionan los modelos que generan imágenes?",
    "¿cómo hago una captura en el móvil?",
    "¿qué cámara me compro para fotos de viaje?",
    "¿por qué se nos olvidan los sueños?",
    "¿cómo se hace una película de animación?",
    "¿merece la pena aprender a programar?",
    "what is the news industry's business model",
    "how do I search for a job effectively",
    "write a poem about a programmer who loves coffee",
    "what do painters use to clean brushes",
    "how do translators handle jokes",
    "explain how a search engine crawler works",
]


def system_open_app():
    if R.random() < 0.6:
        a = pick(APPS)
        return pick(
            [
                "open {a}",
                "launch {a}",
                "start {a}",
                "fire up {a}",
                "can you open {a}",
                "open {a} please",
                "bring up {a}",
                "run {a}",
                "i need {a} open",
                "pull up {a}",
                "get {a} running",
            ]
        ).format(a=a), []
    if R.random() < 0.7:
        a = pick(APPS_ES)
        return pick(["abre {a}", "ábreme {a}", "inicia {a}", "lanza {a}", "ejecuta {a}", "pon {a}"]).format(a=a), []
    a = pick(APPS)
    return pick(["ouvre {a}", "lance {a}", "öffne {a}", "starte {a}", "apri {a}", "abre {a}"]).format(a=a), []


def system_click():
    x, y = R.randint(0, 1920), R.randint(0, 1080)
    return pick(
        [
            "click at {x}, {y}",
            "click {x},{y}",
            "double click at {x} {y}",
            "right click at ({x}, {y})",
            "click on the point {x}, {y}",
            "haz clic en {x}, {y}",
            "pulsa en {x},{y}",
            "doble clic en {x}, {y}",
            "clique en {x}, {y}",
            "klicke auf {x}, {y}",
            "fai clic su {x}, {y}",
            "clica em {x}, {y}",
            "tap the screen at {x} {y}",
            "left-click {x} {y}",
        ]
    ).format(x=x, y=y), []


def system_type():
    p = pick(SAY_EN + SAY_ES + ["hello world", "john@example.com", "Order #4471", "see you soon", "ok"])
    return pick(
        [
            "type '{p}'",
            "type {p} into the search box",
            "write '{p}' in the text field",
            "type this for me: {p}",
            'type "{p}" in the chat',
            "enter the text '{p}'",
            "escribe '{p}' en el campo de texto",
            "teclea '{p}'",
            "tape '{p}'",
            "tippe '{p}'",
            "digita '{p}'",
            "type out '{p}' where the cursor is",
        ]
    ).format(p=p), []


def system_hotkey():
    k = pick(KEYS)
    return pick(
        [
            "press {k}",
            "hit {k}",
            "press {k} please",
            "do {k}",
            "tap {k}",
            "send the keys {k}",
            "pulsa {k}",
            "presiona {k}",
            "aprieta {k}",
            "appuie sur {k}",
            "drücke {k}",
            "premi {k}",
            "carrega em {k}",
            "smash {k}",
        ]
    ).format(k=k), []


def system_screenshot():
    return pick(
        [
            "take a screenshot",
            "screenshot my screen",
            "capture the screen",
            "grab a screenshot",
            "screenshot pls",
            "can you take a screen capture",
            "snap my desktop",
            "take a picture of my screen",
            "haz una captura de pantalla",
            "captura la pantalla",
            "hazme un pantallazo",
            "fais une capture d'écran",
            "mach einen Screenshot",
            "fai uno screenshot",
            "tira um print do ecrã",
            "print screen",
        ]
    ), []


def memory_remember():
    if R.random() < 0.65:
        f = pick(FACTS_EN)
        return pick(
            [
                "remember that {f}",
                "please remember {f}",
                "note that {f}",
                "keep in mind {f}",
                "don't forget that {f}",
                "save this: {f}",
                "fyi {f}",
                "btw {f}, keep that in mind",
                "just so you know, {f}",
                "for future reference, {f}",
                "make a note: {f}",
                "memorize that {f}",
                "{f}. remember that",
                "oh and {f}, store that somewhere",
                "heads up: {f}, remember it",
            ]
        ).format(f=f), []
    f = pick(FACTS_ES)
    return pick(
        [
            "recuerda que {f}",
            "apunta que {f}",
            "no olvides que {f}",
            "ten en cuenta que {f}",
            "guarda esto: {f}",
            "por cierto, {f}, acuérdate",
            "que sepas que {f}",
            "retiens que {f}",
            "merk dir, dass {f}",
            "ricorda che {f}",
            "lembra-te que {f}",
        ]
    ).format(f=f), []


def memory_recall():
    if R.random() < 0.65:
        q = pick(RECALL_EN)
        return pick(
            [
                "{q}?",
                "do you remember {q}",
                "remind me {q}",
                "what did I tell you about that? {q}",
                "hey {q} again?",
                "i forgot, {q}?",
                "did I tell you {q}",
            ]
        ).format(q=q), []
    q = pick(RECALL_ES)
    return pick(
        [
            "¿{q}?",
            "¿te acuerdas de {q}?",
            "recuérdame {q}",
            "¿qué te dije? {q}",
            "qu'est-ce que je t'ai dit sur ça ?",
            "was habe ich dir darüber gesagt?",
            "cosa ti ho detto?",
            "o que é que eu te disse?",
        ]
    ).format(q=q), []


def memory_forget():
    if R.random() < 0.65:
        f = pick(FORGET_EN)
        return pick(
            [
                "forget {f}",
                "delete {f} from memory",
                "please erase {f}",
                "stop remembering {f}",
                "wipe {f}",
                "remove {f} from what you know",
            ]
        ).format(f=f), []
    f = pick(FORGET_ES)
    return pick(
        ["olvida {f}", "borra {f}", "olvídate de {f}", "oublie {f}", "vergiss {f}", "dimentica {f}", "esquece {f}"]
    ).format(f=f), []


# --- attachment requests ------------------------------------------------------------------


def vision_describe():
    return pick(
        [
            "what's in this image?",
            "describe this photo",
            "what am i looking at",
            "describe it",
            "tell me what you see",
            "caption this picture",
            "what is this",
            "what's going on here?",
            "describe this in detail",
            "¿qué hay en la imagen?",
            "descríbeme esta foto",
            "¿qué es esto?",
            "décris cette image",
            "beschreibe dieses Bild",
            "descrivi questa foto",
            "descreve esta imagem",
            "explain this chart",
            "what's this pic about",
        ]
    ), ["image"]


def vision_answer():
    return pick(
        [
            "what breed is this dog?",
            "how many people are in this photo?",
            "is this plant healthy?",
            "what colour is the car?",
            "where was this taken?",
            "is this bread mouldy?",
            "which one of these shoes is cheaper?",
            "what kind of bird is this?",
            "is the door open or closed?",
            "what time does the clock show?",
            "does this outfit match?",
            "¿qué raza de perro es?",
            "¿cuántas personas hay?",
            "¿está sano este árbol?",
            "¿de qué color es el coche?",
            "quelle est cette fleur ?",
            "welche Vogelart ist das?",
            "che tipo di pianta è?",
            "que tipo de cão é este?",
            "is this mole something to worry about?",
            "what does the sign say about parking?",
        ]
    ), ["image"]


def vision_ocr():
    return pick(
        [
            "extract the text from this",
            "copy the text out of this screenshot",
            "ocr this",
            "transcribe the text in this photo",
            "type out what this sign says",
            "get the text from this receipt",
            "read the handwriting on this note and write it down",
            "pull the table out of this image as text",
            "copia el texto de esta foto",
            "extrae el texto",
            "transcribe el texto de la imagen",
            "extrais le texte",
            "extrahiere den Text",
            "estrai il testo",
            "extrai o texto",
        ]
    ), ["image"]


def imagegen_edit():
    return pick(
        [
            "make this black and white",
            "remove the background",
            "turn this into a cartoon",
            "add a rainbow to the sky",
            "make it look like an oil painting",
            "change the car colour to red",
            "erase the person on the left",
            "make my cat wear a crown",
            "brighten this photo",
            "make it look vintage",
            "replace the sky with a starry night",
            "pon la foto en blanco y negro",
            "quita el fondo",
            "hazla estilo acuarela",
            "cambia el color del coche a azul",
            "mets l'image en noir et blanc",
            "entferne den Hintergrund",
            "rendi la foto in bianco e nero",
            "tira o fundo da foto",
        ]
    ), ["image"]


def image_to_code():
    return pick(
        [
            "turn this mockup into html",
            "write the css for this design",
            "build this screen in react",
            "make a web page that looks like this",
            "code this wireframe in flutter",
            "convert this sketch to a vue component",
            "implement this UI with tailwind",
            "convierte este diseño en html",
            "programa esta pantalla en react",
            "écris le html de cette maquette",
        ]
    ), ["image"]


def vision_video():
    return pick(
        [
            "what happens in this video?",
            "summarize this clip",
            "describe this video",
            "when does the car appear?",
            "how many people walk past in this video?",
            "what is the cat doing?",
            "is anyone speaking in this clip?",
            "¿qué pasa en este vídeo?",
            "resume este clip",
            "que se passe-t-il dans cette vidéo ?",
            "was passiert in diesem Video?",
            "cosa succede nel video?",
            "o que acontece neste vídeo?",
            "at what second does the ball hit the net",
        ]
    ), ["video"]


def voice_transcribe_typed():
    return pick(
        [
            "transcribe this",
            "transcribe this recording",
            "what does he say here",
            "write down this voice note",
            "can you transcribe the audio",
            "turn this into text",
            "what's said in this voicemail",
            "type out this recording",
            "speech to text please",
            "transcribe el audio",
            "¿qué dice en este audio?",
            "pasa esta nota de voz a texto",
            "transcris cet audio",
            "transkribiere das",
            "trascrivi l'audio",
            "transcreve isto",
            "",
        ]
    ), ["audio"]


SINGLE = {
    "imagegen.generate": (imagegen_generate, 230),
    "video.generate": (video_generate, 170),
    "voice.speak": (voice_speak, 180),
    "browser.research": (browser_research, 300),
    "browser.open": (browser_open, 110),
    "coder.generate": (coder_generate, 230),
    "coder.edit": (coder_edit, 170),
    "coder.explain": (coder_explain, 180),
    "assistant.chat": (assistant_chat, 480),
    "system.open_app": (system_open_app, 120),
    "system.click": (system_click, 60),
    "system.type": (system_type, 80),
    "system.hotkey": (system_hotkey, 80),
    "system.screenshot": (system_screenshot, 60),
    "memory.remember": (memory_remember, 170),
    "memory.recall": (memory_recall, 120),
    "memory.forget": (memory_forget, 80),
    "vision.describe": (vision_describe, 70),
    "vision.answer": (vision_answer, 90),
    "vision.ocr": (vision_ocr, 60),
    "imagegen.edit": (imagegen_edit, 80),
    "coder.generate+image": (image_to_code, 50),
    "vision.video": (vision_video, 60),
    "voice.transcribe": (voice_transcribe_typed, 70),
}

ATTACHED = {
    "vision.describe",
    "vision.answer",
    "vision.ocr",
    "imagegen.edit",
    "coder.generate+image",
    "vision.video",
    "voice.transcribe",
}

# Follow-up clauses: (text, tool, reads the previous step's output)
FOLLOW = {
    # One clause, two steps: describe the picture, then say the description.
    "vision.describe+voice.speak": [
        "describe it out loud",
        "read me a description of it",
        "tell me out loud what's in it",
        "describe it to me aloud",
        "descríbela en voz alta",
        "dime en voz alta lo que se ve",
        "décris-la à voix haute",
        "beschreibe es laut",
    ],
    "voice.speak": [
        "summarise them aloud",
        "summarise it out loud",
        "give me the gist out loud",
        "resúmelo en voz alta",
        "read it aloud",
        "read it out loud to me",
        "say it out loud",
        "then read it to me",
        "léelo en voz alta",
        "dímelo en voz alta",
        "lis-le à voix haute",
        "lies es laut vor",
        "read them aloud",
    ],
    "memory.remember": [
        "remember it",
        "save that for later",
        "remember them",
        "keep that in mind",
        "recuérdalo",
        "guárdalo",
        "souviens-t'en",
        "merk dir das",
        "store it in memory",
    ],
    "vision.describe": ["describe what you see", "describe it", "tell me what's on it", "descríbelo"],
    "system.type": ["type '{p}'", "write '{p}' in it", "escribe '{p}'"],
    "system.hotkey": ["press {k}", "then hit {k}", "pulsa {k}"],
    # Summarising a page is part of reading it: no step of its own.
    "none": [
        "summarise it",
        "give me the key points",
        "tell me the main headlines",
        "sum it up for me",
        "tell me what it says",
        "resúmelo",
        "dime los titulares",
        "résume-le",
        "fasse es zusammen",
        "and give me sources",
        "con fuentes",
    ],
    "assistant.chat": [
        "translate it into English",
        "translate it to Spanish",
        "tradúcelo al inglés",
        "then give me a summary",
        "summarise it in three bullet points",
    ],
}
CHAINS = [  # (first tool, follow-up tool, weight)
    ("browser.research", "voice.speak", 30),
    ("browser.research", "memory.remember", 25),
    ("assistant.chat", "voice.speak", 30),
    ("imagegen.generate", "vision.describe", 15),
    ("system.screenshot", "vision.describe", 20),
    ("system.open_app", "system.type", 20),
    ("system.open_app", "system.hotkey", 10),
    ("browser.open", "voice.speak", 10),
    ("vision.describe", "voice.speak", 15),
    ("vision.ocr", "memory.remember", 10),
    ("voice.transcribe", "assistant.chat", 25),
    ("voice.transcribe", "memory.remember", 10),
    ("coder.generate", "voice.speak", 5),
    ("vision.answer", "voice.speak", 8),
    ("browser.open", "none", 20),
    ("browser.research", "none", 15),
    ("imagegen.generate", "vision.describe+voice.speak", 12),
    ("system.screenshot", "vision.describe+voice.speak", 6),
]
CONNECT_EN = [" and ", " and then ", ", then ", " then ", ". then ", ", and "]
CONNECT_ES = [" y ", " y luego ", ", después ", " y después "]


# --- noise -------------------------------------------------------------------------------


def typo(s: str) -> str:
    words = s.split(" ")
    cand = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    for i in R.sample(cand, k=min(len(cand), R.choice([1, 1, 2]))):
        w = list(words[i])
        j = R.randrange(1, len(w) - 1)
        op = R.random()
        if op < 0.35:
            w[j], w[j + 1 if j + 1 < len(w) else j - 1] = w[j + 1 if j + 1 < len(w) else j - 1], w[j]
        elif op < 0.6:
            del w[j]
        elif op < 0.8:
            w.insert(j, w[j])
        else:
            w[j] = R.choice("qwertyuiopasdfghjklzxcvbnm")
        words[i] = "".join(w)
    return " ".join(words)


def slang(s: str) -> str:
    s = s.replace("you ", "u ").replace("please", "pls") if R.random() < 0.5 else s
    return (
        pick(["", "hey ", "yo ", "ok so ", "quick one: ", "oye ", "porfa "])
        + s
        + pick(["", " pls", " thx", " lol", " asap", " :)", " ty", " porfa", " 🙏"])
    )


def indirect(s: str, tool: str) -> str:
    wrap = {
        "voice.speak": ["my hands are full, ", "i can't look at the screen right now, "],
        "browser.research": ["i was wondering, ", "quick question: ", "before I leave, "],
        "memory.remember": ["oh by the way, ", "not urgent but "],
    }.get(
        tool,
        [
            "i was hoping you could ",
            "would be great if you could ",
            "could you maybe ",
            "i'd like you to ",
            "necesito que ",
            "me ayudas? ",
        ],
    )
    w = pick(wrap)
    return w + s[0].lower() + s[1:] if s else s


def transcript(s: str) -> str:
    s = re.sub(r"[\"'`¿?¡!.,:;]", "", s).lower()
    filler = pick(["", "um ", "uh ", "so ", "okay so ", "hey loom ", "like "])
    return filler + s + pick(["", "", " thanks", " please", " okay"])


def _lang() -> str:
    r = R.random()
    return "en" if r < 0.48 else "es" if r < 0.78 else pick(["fr", "de", "it", "pt"])


def _other(lang, templates, **slots):
    t = pick(templates[lang])
    values = {"b": pick(BRANDS), "l": pick(CODE_LANGS), "c": pick(PLACES)}
    values.update({k: pick(v[lang]) for k, v in slots.items()})
    return t.format(**values)


def intent_of(tool: str) -> str:
    group = tool.split(".")[0]
    if tool == "voice.speak":
        return "speak"
    if tool == "voice.transcribe":
        return "transcribe"
    return {
        "assistant": "chat",
        "coder": "code",
        "imagegen": "imagegen",
        "video": "videogen",
        "browser": "research",
        "system": "pc_control",
        "memory": "memory",
        "vision": "vision",
    }[group]


def noisy(text: str, tool: str) -> str:
    r = R.random()
    if r < 0.18:
        text = typo(text)
    elif r < 0.30:
        text = slang(text)
    elif r < 0.40:
        text = indirect(text, tool)
    if R.random() < 0.15 and text:
        text = text[0].upper() + text[1:]
    return text


# More phrasings per tool, in the styles users type: fresh facts asked without "search",
# things to remember said in passing, error messages quoted inside a question, recall
# asked indirectly. Slots: {c} place, {n} news topic, {p} product, {e} error, {l} language,
# {f} fact, {x} a remembered thing.
REMEMBERED = ["restaurant", "wine", "book", "hotel", "podcast", "café", "hiking trail", "movie", "beer", "barber"]
EXTRA = {
    "browser.research": [
        "is the ferry to {c} running today?",
        "did {c} win last night?",
        "are shops open on sunday in {c}?",
        "has the {p} come out yet",
        "any delays at {c} airport right now?",
        "how did the markets close today",
        "what's happening with {n}",
        "is it snowing in {c} at the moment",
        "who's playing at the {c} stadium tonight",
        "is the road to {c} closed",
        "what's the euro at today",
        "trouve-moi les infos du jour sur {n}",
        "quoi de neuf sur {n} ?",
        "y a-t-il des bouchons vers {c} ?",
        "le {p} est sorti ?",
        "gibt es Neuigkeiten zu {n}?",
        "fährt die Fähre nach {c} heute?",
        "wer hat gestern gewonnen?",
        "ci sono scioperi oggi a {c}?",
        "novità su {n}?",
        "com'è il traffico a {c} adesso?",
        "há greve de comboios hoje?",
        "novidades sobre {n}?",
        "está a chover em {c} agora?",
        "¿sigue abierta la farmacia de la plaza?",
        "¿cómo va el tráfico hacia {c}?",
        "¿ha salido ya el {p}?",
        "¿qué se sabe de {n}?",
        "¿abre hoy el museo de {c}?",
        "before I go out, is it going to rain in {c}?",
    ],
    "memory.recall": [
        "what's the name of the {x} I said I liked?",
        "which {x} did I mention last week?",
        "what did I say about the {x}?",
        "remind me what I told you about the {x}",
        "what was that {x} I told you about",
        "didn't I tell you about a {x}? what was it",
        "¿cómo se llamaba el {x} que te dije?",
        "¿qué {x} te recomendé la semana pasada?",
        "comment s'appelait le {x} dont je t'ai parlé ?",
        "wie hieß das {x}, von dem ich dir erzählt habe?",
        "come si chiamava il {x} di cui ti ho parlato?",
        "qual era o {x} de que te falei?",
    ],
    "memory.remember": [
        "btw {f}",
        "oh and {f}, keep it in mind",
        "{f}, in case I forget",
        "{f} - just so you have it",
        "for the record, {f}",
        "note to self: {f}",
        "ojo, {f}, que no se te olvide",
        "au fait, {f}, retiens-le",
        "übrigens: {f}, merk dir das",
        "tra l'altro {f}, ricordatelo",
        "já agora, {f}, guarda isso",
    ],
    "coder.explain": [
        "why does my {l} code say '{e}'?",
        "what does '{e}' mean?",
        'my build says "{e}", help',
        "getting '{e}' when I run the tests, what's wrong",
        "the compiler keeps saying '{e}' - why?",
        "¿por qué mi código dice '{e}'?",
        "¿qué significa '{e}'?",
        "pourquoi mon code affiche '{e}' ?",
        "warum sagt mein Code '{e}'?",
        "perché il mio codice dice '{e}'?",
        "porque é que o meu código diz '{e}'?",
    ],
    "voice.speak": [
        "I'm driving, read me this message: {q}",
        "my hands are busy, read out: {q}",
        "can you say this for me: {q}",
        "estoy conduciendo, léeme esto: {q}",
        "je conduis, lis-moi ça : {q}",
        "ich fahre, lies mir das vor: {q}",
    ],
    "assistant.chat": [
        "how do {l} compilers work",
        "what makes a photo look professional",
        "why do videos buffer",
        "how do voice assistants understand speech",
        "what's the history of the internet",
        "explain how search engines make money",
        "how do I remember to drink water",
        "ok thanks, that helps",
        "what do you think about remote work",
        "is it worth buying the {p}?",
        "tell me about {c}",
        "write a short speech for my dad's retirement",
        "what's a fun fact about {c}",
        "comment marche un moteur de recherche ?",
        "wie funktioniert ein Fotoapparat?",
        "come funziona internet?",
        "como funciona um assistente de voz?",
        "¿qué opinas del teletrabajo?",
        "háblame de {c}",
    ],
}


def extra(tool: str) -> str:
    return pick(EXTRA[tool]).format(
        c=pick(PLACES),
        n=pick(TOPICS_FRESH),
        p=pick(PRODUCTS),
        e=pick(ERRORS),
        l=pick(CODE_LANGS),
        f=pick(FACTS_EN + FACTS_ES),
        x=pick(REMEMBERED),
        q=pick(SAY_EN + SAY_ES),
    )


EXTRA_COUNTS = {
    "browser.research": 120,
    "memory.recall": 60,
    "memory.remember": 60,
    "coder.explain": 60,
    "voice.speak": 40,
    "assistant.chat": 80,
}


# Fresh facts vs timeless knowledge, in every language: the same question words ("who",
# "how much", "why") are research when they hang on a time ("today", "last night", "next
# friday") or a live quantity (a price, a score, a delay), and chat when they do not.
FRESH_Q = {
    "en": [
        "who won {ev} {t}",
        "what happened {w} {t}",
        "how much is {price} {t}",
        "is {place} open {t}",
        "what's the score of {ev} {t}",
        "any delays on {route} {t}",
        "what's the weather like {t} in {c}",
        "how are {mkt} doing {t}",
        "is {route} running {t}",
        "what's new with {n} {t}",
    ],
    "es": [
        "¿quién ganó {ev} {t}?",
        "¿qué ha pasado {w} {t}?",
        "¿cuánto cuesta {price} {t}?",
        "¿está abierto {place} {t}?",
        "¿cómo va {ev} {t}?",
        "¿hay retrasos en {route} {t}?",
        "¿qué tiempo hace {t} en {c}?",
        "¿cómo está {mkt} {t}?",
    ],
    "fr": [
        "qui a gagné {ev} {t} ?",
        "qu'est-ce qui s'est passé {w} {t} ?",
        "combien coûte {price} {t} ?",
        "est-ce que {place} est ouvert {t} ?",
        "il y a des retards sur {route} {t} ?",
        "quel temps fait-il {t} à {c} ?",
    ],
    "de": [
        "wer hat {ev} {t} gewonnen?",
        "was ist {t} {w} passiert?",
        "wie viel kostet {price} {t}?",
        "hat {place} {t} geöffnet?",
        "gibt es {t} Verspätungen auf {route}?",
        "wie ist das Wetter {t} in {c}?",
    ],
    "it": [
        "chi ha vinto {ev} {t}?",
        "cosa è successo {w} {t}?",
        "quanto costa {price} {t}?",
        "{place} è aperto {t}?",
        "ci sono ritardi su {route} {t}?",
        "che tempo fa {t} a {c}?",
    ],
    "pt": [
        "quem ganhou {ev} {t}?",
        "o que aconteceu {w} {t}?",
        "quanto custa {price} {t}?",
        "{place} está aberto {t}?",
        "há atrasos em {route} {t}?",
        "como está o tempo {t} em {c}?",
    ],
}
FRESH_T = {
    "en": ["today", "tonight", "right now", "last night", "yesterday", "this week", "next friday", "this morning"],
    "es": ["hoy", "esta noche", "ahora mismo", "anoche", "ayer", "esta semana", "el viernes que viene"],
    "fr": ["aujourd'hui", "ce soir", "maintenant", "hier soir", "hier", "cette semaine"],
    "de": ["heute", "heute Abend", "jetzt", "gestern Abend", "gestern", "diese Woche"],
    "it": ["oggi", "stasera", "adesso", "ieri sera", "ieri", "questa settimana"],
    "pt": ["hoje", "esta noite", "agora", "ontem à noite", "ontem", "esta semana"],
}
FRESH_SLOTS = {
    "ev": [
        "the match",
        "the final",
        "the race",
        "the derby",
        "the election",
        "el partido",
        "le match",
        "das Spiel",
        "la partita",
        "o jogo",
    ],
    "w": [
        "in the news",
        "on the stock market",
        "en la bolsa",
        "en las noticias",
        "à la bourse",
        "an der Börse",
        "in borsa",
        "na bolsa",
        "with the storm",
        "in Parliament",
    ],
    "price": [
        "a flight to Rome",
        "a train ticket to Paris",
        "bitcoin",
        "petrol",
        "gold",
        "un billete a Roma",
        "la gasolina",
        "le bitcoin",
        "das Benzin",
        "la benzina",
        "a gasolina",
    ],
    "place": [
        "the pharmacy",
        "the post office",
        "the museum",
        "the bank",
        "la farmacia",
        "le musée",
        "die Apotheke",
        "il museo",
        "o museu",
    ],
    "route": [
        "the metro",
        "the A7",
        "the northern line",
        "el metro",
        "la ligne 4",
        "der S-Bahn",
        "la metro",
        "o metro",
    ],
    "mkt": ["the markets", "stocks", "la bolsa", "the dollar"],
}
TIMELESS_Q = {
    "en": [
        "why do {x}",
        "what is {y}",
        "how does {y} work",
        "explain {y} to me",
        "what's the difference between {y} and {z}",
        "how many {u} are in {v}",
        "who invented {y}",
        "tell me about {y}",
    ],
    "es": [
        "¿por qué {x}?",
        "¿qué es {y}?",
        "¿cómo funciona {y}?",
        "explícame {y}",
        "¿qué diferencia hay entre {y} y {z}?",
        "¿quién inventó {y}?",
        "háblame de {y}",
    ],
    "fr": ["pourquoi {x} ?", "c'est quoi {y} ?", "comment fonctionne {y} ?", "explique-moi {y}", "qui a inventé {y} ?"],
    "de": ["warum {x}?", "was ist {y}?", "wie funktioniert {y}?", "erklär mir {y}", "wer hat {y} erfunden?"],
    "it": ["perché {x}?", "cos'è {y}?", "come funziona {y}?", "spiegami {y}", "chi ha inventato {y}?"],
    "pt": ["porque é que {x}?", "o que é {y}?", "como funciona {y}?", "explica-me {y}", "quem inventou {y}?"],
}
TIMELESS_SLOTS = {
    "x": [
        "we yawn",
        "cats purr",
        "leaves change colour",
        "bostezamos",
        "los gatos ronronean",
        "les chats ronronnent",
        "Wasser nass ist",
        "il mare è salato",
        "o céu é azul",
        "we dream",
        "onions make you cry",
        "the moon changes shape",
    ],
    "y": [
        "a black hole",
        "photosynthesis",
        "a vaccine",
        "inflation",
        "the internet",
        "a rainbow",
        "DNA",
        "un agujero negro",
        "la fotosíntesis",
        "la démocratie",
        "die Photosynthese",
        "un vulcano",
        "um buraco negro",
        "the printing press",
        "the telephone",
        "a compass",
        "gravity",
    ],
    "z": ["climate", "a virus", "a comet", "el tiempo", "la bactérie"],
    "u": ["bones", "grams", "minutes", "days", "ounces"],
    "v": ["the human body", "a kilo", "a day", "a year", "a pound"],
}


# Arithmetic told as a story: "now" and "today" here are no sign of fresh facts.
NAMES = ["Ana", "Ben", "Lucía", "Omar", "Mia", "Jonas", "Priya", "Leo"]
THINGS = ["marbles", "cookies", "stickers", "euros", "books", "pencils", "oranges", "cards"]
WORD_PROBLEMS = [
    "{n} has {a} {t}, gets {b} more and gives {c} away. how many does {n} have now?",
    "if {n} had {a} {t} and lost {c}, how many are left today?",
    "{n} buys {a} {t} and then {b} more, how many {t} now?",
    "a shop sells {a} {t} on monday and {b} today, how many in total?",
    "{n} tiene {a} {t}, compra {b} más y regala {c}. ¿cuántos tiene ahora?",
    "si hoy tengo {a} {t} y mañana compro {b}, ¿cuántos tendré?",
    "{n} a {a} {t}, en donne {c}. combien en reste-t-il maintenant ?",
    "{n} hat {a} {t} und bekommt heute {b} dazu. wie viele sind es jetzt?",
]


def word_problem() -> str:
    return pick(WORD_PROBLEMS).format(n=pick(NAMES), t=pick(THINGS), a=R.randint(2, 30), b=R.randint(1, 20),
                                      c=R.randint(1, 9))


def fresh_or_timeless(kind: str) -> str:
    lang = R.choice(["en", "en", "es", "es", "fr", "de", "it", "pt"])
    if kind == "fresh":
        t = pick(FRESH_Q[lang])
        values = {k: pick(v) for k, v in FRESH_SLOTS.items()}
        return t.format(t=pick(FRESH_T[lang]), c=pick(PLACES), n=pick(TOPICS_FRESH), **values)
    t = pick(TIMELESS_Q[lang])
    return t.format(**{k: pick(v) for k, v in TIMELESS_SLOTS.items()})


def main() -> None:
    rows = []
    for key, (fn, n) in SINGLE.items():
        tool = key.split("+")[0]
        for _ in range(n):
            text, atts = fn()
            text = noisy(text, tool)
            steps = [tool]
            if key == "coder.generate+image":
                steps = ["vision.describe", "coder.generate"]
            if tool == "voice.transcribe":
                steps = ["voice.transcribe"]
            rows.append(
                {"text": text, "attachments": atts, "intent": intent_of(tool), "steps": steps, "parts": [[text, tool]]}
            )
    for tool, n in EXTRA_COUNTS.items():
        for _ in range(n):
            text = noisy(extra(tool), tool)
            rows.append(
                {"text": text, "attachments": [], "intent": intent_of(tool), "steps": [tool], "parts": [[text, tool]]}
            )
    for kind, tool, n in (("fresh", "browser.research", 260), ("timeless", "assistant.chat", 220),
                          ("problem", "assistant.chat", 80)):
        for _ in range(n):
            text = noisy(word_problem() if kind == "problem" else fresh_or_timeless(kind), tool)
            rows.append(
                {"text": text, "attachments": [], "intent": intent_of(tool), "steps": [tool], "parts": [[text, tool]]}
            )
    # Spoken requests: the transcript of a request, sent as audio with no text.
    spoken_tools = [k for k in SINGLE if k not in ATTACHED]
    for _ in range(260):
        tool = pick(spoken_tools)
        text, _ = SINGLE[tool][0]()
        words = transcript(text)
        rows.append(
            {
                "text": "[spoken] " + words,
                "attachments": ["audio"],
                "intent": intent_of(tool),
                "steps": ["voice.transcribe", tool],
                "parts": [[words, tool]],
            }
        )
    for _ in range(60):  # recordings that are not requests: transcribe only
        words = transcript(pick(RECORDINGS))
        rows.append(
            {
                "text": "[spoken] " + words,
                "attachments": ["audio"],
                "intent": "transcribe",
                "steps": ["voice.transcribe"],
                "parts": [[words, "voice.transcribe"]],
            }
        )
    # Multi-step requests.
    weights = [w for *_, w in CHAINS]
    for _ in range(330):
        first, then, _ = R.choices(CHAINS, weights)[0]
        key = "voice.transcribe" if first == "voice.transcribe" else first
        a, atts = SINGLE[key][0]()
        if first == "voice.transcribe" and not a:
            a = "transcribe this"
        b = pick(FOLLOW[then]).format(p=pick(SAY_EN), k=pick(KEYS))
        joined = a.rstrip(".?! ") + pick(CONNECT_ES if re.search(r"[áéíóúñ¿]|\b(?:el|la|de)\b", a) else CONNECT_EN) + b
        steps = [first] if then == "none" else [first, *then.split("+")]
        if key == "voice.transcribe" or "audio" in atts:
            steps = ["voice.transcribe"] + [t for t in steps if t != "voice.transcribe"]
        rows.append(
            {
                "text": noisy(joined, first),
                "attachments": atts,
                "intent": intent_of(first),
                "steps": steps,
                "parts": [[a, first], [b, then]],
            }
        )
    R.shuffle(rows)
    with OUT.open("w", encoding="utf-8") as f:
        for i, row in enumerate(rows, 1):
            f.write(json.dumps({"id": f"c-{i:04d}", **row}, ensure_ascii=False) + "\n")
    print(f"{len(rows)} requests -> {OUT}")


# --- widening (after the dev3 set showed weak styles) ------------------------------------
# Styles the corpus had too little of: short commands in every language (a quoted button
# label is a click target, not words to speak), key names, memory said in French, Italian,
# German and Portuguese, thanks and feelings (chat, not a search), casual code requests,
# code to convert or translate (generate, not explain), live prices and rates, edits of an
# attached photo, and Dutch, a seventh language. Own phrasings: nothing copied from a dev or
# held-out set. Drawn with their own generator, so the rows above stay as they were.
RW = random.Random(20261130)
LABELS = ["OK", "Accept", "Next", "Save", "Cancel", "Sign in", "Submit", "Continue", "Aceptar", "Siguiente",
          "Guardar", "Enviar", "Valider", "Suivant", "Enregistrer", "Weiter", "Speichern", "Abbrechen", "Avanti",
          "Salva", "Annulla", "Aceitar", "Seguinte", "Guardar", "Volgende", "Opslaan"]
KEYNAMES = ["Enter", "Escape", "Tab", "F5", "F11", "the Windows key", "Delete", "Backspace", "Home", "End", "space"]
GOODS = ["gold", "silver", "bitcoin", "ethereum", "oil", "the dollar", "the euro", "the yen", "diesel", "Tesla stock",
         "copper", "natural gas"]
PEOPLE = ["my neighbour", "my dentist", "my boss", "my landlord", "the plumber", "ma collègue", "mon dentiste",
          "mi vecina", "mi jefe", "mein Nachbar", "meine Chefin", "il mio vicino", "o meu senhorio", "mijn buurvrouw"]
NAMES = ["Marco", "Jürgen", "Inês", "Lucía", "Pieter", "Aiko", "Tomás", "Margaux"]
CODE_SNIPPETS = ["`while (j < len) total *= b[j++]`", "`def f(x): return [y*2 for y in x]`",
                 "`axios.get(u).then(res => setData(res.data))`", "`SELECT * FROM users WHERE age > 30`",
                 "`x = list(map(int, input().split()))`", "`if err != nil { return err }`",
                 "`$('.btn').click(function(){ alert('hi') })`", "`for i in range(10): print(i)`"]
TASKS = ["memoize a function", "validate a postcode", "parse a CSV file", "flatten a nested list",
         "retry a request with backoff", "format a date as ISO 8601", "count words in a file",
         "deep-copy an object", "check if a string is a palindrome", "merge two sorted arrays",
         "read a JSON config", "throttle scroll events"]
LAYOUTS = ["a responsive navbar", "a two-column flexbox page", "a pricing table", "a login form",
           "a card layout", "a sticky footer", "a modal dialog", "a dark mode toggle"]
STYLES = ["a Monet painting", "a watercolour", "a pencil sketch", "an anime still", "a 1950s postcard",
          "pixel art", "an oil painting", "a comic panel"]
WIDE = {
    "system.click": [
        "click on '{b}'", "click the '{b}' button", "press the \"{b}\" button", "hit {b}", "tap on \"{b}\"",
        "haz clic en \"{b}\"", "pulsa el botón «{b}»", "dale a \"{b}\"", "clique sur « {b} »",
        "appuie sur le bouton \"{b}\"", "klick auf \"{b}\"", "drück auf den Knopf \"{b}\"", "clicca su \"{b}\"",
        "premi il pulsante '{b}'", "clica em \"{b}\"", "carrega no botão '{b}'", "klik op \"{b}\"",
    ],
    "system.hotkey": [
        "press {k}", "hit {k}", "press the {k} key", "just hit {k} for me", "pulsa {k}", "dale a {k}",
        "pulsa la tecla {k}", "appuie sur {k}", "tape sur la touche {k}", "drück {k}", "drück die Taste {k}",
        "premi {k}", "premi il tasto {k}", "carrega em {k}", "pressiona a tecla {k}", "druk op {k}",
        "pulsa Intro", "appuie sur Entrée", "drück Eingabe",
    ],
    "memory.remember": [
        "n'oublie pas que {pp} s'appelle {nm}", "retiens que {pp} s'appelle {nm}", "souviens-toi : {pp} c'est {nm}",
        "note bien que {pp} s'appelle {nm}", "merk dir, dass {pp} {nm} heißt", "vergiss nicht: {pp} heißt {nm}",
        "ricordati che {pp} si chiama {nm}", "tieni a mente che {pp} si chiama {nm}",
        "lembra-te que {pp} se chama {nm}", "não te esqueças: {pp} chama-se {nm}",
        "recuerda que {pp} se llama {nm}", "apúntate que {pp} se llama {nm}",
        "heads up, {pp} is called {nm}, remember that", "onthoud dat {pp} {nm} heet",
    ],
    "memory.recall": [
        "comment s'appelle {pp} déjà ?", "tu te souviens du nom de {pp} ?", "c'était quoi le nom de {pp} ?",
        "wie heißt {pp} nochmal?", "weißt du noch, wie {pp} heißt?", "come si chiama {pp}, te l'avevo detto?",
        "ti ricordi come si chiama {pp}?", "como se chama {pp}, lembras-te?", "qual é o nome de {pp} mesmo?",
        "¿cómo se llamaba {pp}?", "¿te acuerdas de cómo se llama {pp}?", "what was {pp}'s name again?",
        "hoe heet {pp} ook alweer?",
    ],
    "assistant.chat": [
        "cheers, you're a star", "you're a lifesaver, thanks", "lol ok", "good night!", "feeling a bit low today",
        "i'm so bored", "i'm nervous about my exam tomorrow", "that was funny haha", "you rock",
        "gracias, eres un crack", "me siento un poco solo", "qué aburrimiento", "merci, t'es génial",
        "je suis un peu triste ce soir", "danke, du bist super", "mir ist langweilig", "grazie mille, sei un mito",
        "mi sento un po' giù", "obrigado, és o maior", "estou cansado hoje", "bedankt, je bent top",
        "what does the idiom '{id}' mean?", "¿qué significa la expresión '{id}'?", "que veut dire '{id}' ?",
    ],
    "coder.generate": [
        "{l} function to {t} pls", "quick {l} snippet to {t}", "regex to {t}? just the pattern",
        "write me {ly}", "make me {ly} in html and css", "need {ly}, css only", "código en {l} para {t}",
        "hazme {ly} en css", "un script {l} qui sert à {t}", "eine {l}-Funktion, um {t}",
        "una funzione {l} per {t}", "uma função em {l} para {t}", "schrijf een {l} functie om {t}",
        "convert this to {l}: {cs}", "translate this code to {l}: {cs}", "rewrite this with async/await: {cs}",
        "pásame esto a {l}: {cs}", "traduis ce code en {l} : {cs}", "übersetze das nach {l}: {cs}",
        "riscrivi questo in {l}: {cs}", "converte isto para {l}: {cs}", "zet dit om naar {l}: {cs}",
    ],
    "browser.research": [
        "current price of {g}", "price of {g} right now", "how much is {g} trading at", "{g} price today",
        "¿a cuánto está {g} hoy?", "¿cómo está {g} esta semana?", "cours de {g} aujourd'hui",
        "wie steht {g} gerade?", "quanto vale {g} oggi?", "qual é a cotação de {g} hoje?",
        "wat kost {g} vandaag?", "what's on at the cinema in {c} tonight", "welke films draaien er vandaag in {c}?",
        "hoe laat gaat de trein naar {c} vandaag?", "is het druk op de weg naar {c}?",
    ],
    "imagegen.generate": [
        "teken {sn}", "maak een plaatje van {sn}", "maak een logo voor mijn bakkerij",
        "genereer een afbeelding van {sn}",
        "need a profile pic of {se}", "could i get an avatar of {se}", "disegnami {se}",
    ],
    "system.open_app": [
        "open {a}", "start {a} voor me", "open {a} alsjeblieft", "launch {a}", "apri {a}", "abre {a}",
    ],
}
WIDE_COUNTS = {"system.click": 50, "system.hotkey": 50, "memory.remember": 50, "memory.recall": 45,
               "assistant.chat": 90, "coder.generate": 90, "browser.research": 60, "imagegen.generate": 30,
               "system.open_app": 15}
WIDE_IMAGE_EDIT = [
    "turn this photo into {st}", "make this picture look like {st}", "make this photo black and white",
    "convierte esta foto en {st}", "pon esta foto en blanco y negro", "transforme cette photo en {st}",
    "mach aus diesem Foto {st}", "mach das Foto schwarzweiß", "trasforma questa foto in {st}",
    "transforma esta foto em {st}", "maak van deze foto {st}", "remove the background from this photo",
]
PHOTO_QUESTIONS = [
    "the paint in this photo is turning grey, is that mould?", "my tomatoes look like this, are they ripe yet?",
    "is this mushroom in the picture safe to eat?", "this rash showed up yesterday, does it look infected?",
    "the tyre in this photo looks flat to me, is it?", "why is the cake in this picture so dense?",
    "is the wiring in this photo done right?", "las hojas de esta planta se están volviendo marrones, ¿le falta agua?",
    "¿está bien hecho este nudo de la foto?", "les feuilles de ma plante sur la photo jaunissent, pourquoi ?",
    "ist der Riss in dieser Wand auf dem Foto gefährlich?", "questa muffa nella foto è pericolosa?",
    "a planta desta foto está a morrer?", "is deze paddenstoel op de foto giftig?",
]
IDIOMS = ["break a leg", "ser pan comido", "poser un lapin", "tomar el pelo", "spill the beans",
          "avoir le cafard", "Tomaten auf den Augen haben"]
APPS = ["Spotify", "Firefox", "the calculator", "VS Code", "de terminal", "Thunderbird"]
SUBJ_NL = ["een giraf op een fiets", "een kat in de regen", "een vuurtoren bij zonsondergang",
           "een robot die koffie zet", "een molen in de sneeuw"]


def wide(tool: str) -> str:
    return RW.choice(WIDE[tool]).format(
        b=RW.choice(LABELS), k=RW.choice(KEYNAMES), pp=RW.choice(PEOPLE), nm=RW.choice(NAMES),
        l=RW.choice(CODE_LANGS), t=RW.choice(TASKS), ly=RW.choice(LAYOUTS), cs=RW.choice(CODE_SNIPPETS),
        g=RW.choice(GOODS), c=RW.choice(PLACES), sn=RW.choice(SUBJ_NL), se=RW.choice(SUBJ_EN),
        id=RW.choice(IDIOMS), a=RW.choice(APPS),
        st=RW.choice(STYLES))


def wide_rows() -> list[dict]:
    rows = []
    for tool, n in WIDE_COUNTS.items():
        for _ in range(n):
            text = wide(tool)
            rows.append({"text": text, "attachments": [], "intent": intent_of(tool), "steps": [tool],
                         "parts": [[text, tool]]})
    for _ in range(40):  # a question about what a photo shows is not an edit of it
        text = RW.choice(PHOTO_QUESTIONS)
        rows.append({"text": text, "attachments": ["image"], "intent": "vision", "steps": ["vision.answer"],
                     "parts": [[text, "vision.answer"]]})
    for _ in range(40):
        text = RW.choice(WIDE_IMAGE_EDIT).format(st=RW.choice(STYLES))
        rows.append({"text": text, "attachments": ["image"], "intent": "imagegen", "steps": ["imagegen.edit"],
                     "parts": [[text, "imagegen.edit"]]})
    return rows


RECORDINGS = [
    "the board approved the budget and the next review is in march",
    "hi it's me call me back when you get this",
    "so yesterday we went to the lake and the water was freezing but the kids loved it",
    "minutes from the standup nobody is blocked deploy is on friday",
    "chapter three the storm had passed by morning and the village was silent",
    "hola soy ana te llamo luego para lo de la cena",
    "reminder from the clinic your appointment is confirmed",
    "welcome to the lecture today we cover the french revolution and its causes",
    "the package arrived damaged so I am returning it tomorrow",
]


def append_wide() -> None:
    """Append the widening rows to the corpus as it is (ids continue): regenerating it all
    would also change rows reviewed before."""
    lines = [line for line in OUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    if any('"id": "w-' in line for line in lines):
        raise SystemExit("the widening rows are already in the corpus")
    with OUT.open("a", encoding="utf-8") as f:
        for i, row in enumerate(wide_rows(), 1):
            f.write(json.dumps({"id": f"w-{i:04d}", **row}, ensure_ascii=False) + "\n")
    print(f"{len(lines)} + {i} requests -> {OUT}")


# --- hand-written requests ----------------------------------------------------------------
# Templates give every phrasing of a tool the same skeleton; people write requests no template
# produces, and the router lost 4-6 points on every new writer. written_requests.txt holds
# requests written by hand (see its header); they become their own corpus file, which training
# reads after the generated one.
WRITTEN_SRC = Path(__file__).with_name("written_requests.txt")
WRITTEN = Path(__file__).with_name("routing_written.jsonl")
_TAKES_IMAGE = ("vision.", "imagegen.edit")


def written_row(tools: list[str], atts: list[str], text: str) -> dict:
    """One corpus row from a hand-written line: clauses from ``split_clauses`` paired with the
    line's tools, the steps an attachment needs first (audio is transcribed, an image sent to a
    tool that takes none is described) and the intent of the first real step."""
    from plugins.assistant.rules import split_clauses  # the router's own splitting

    spoken = text.startswith("[spoken] ")
    words = text[len("[spoken] "):] if spoken else text
    clauses = split_clauses(words)
    if len(clauses) != len(tools):
        raise ValueError(f"{text!r} splits into {len(clauses)} clauses {clauses} but names {len(tools)} tools")
    steps = [t for tool in tools if tool != "none" for t in tool.split("+")]
    if "audio" in atts and steps[0] != "voice.transcribe":
        steps = ["voice.transcribe", *steps]
    elif "image" in atts and not steps[0].startswith(_TAKES_IMAGE):
        steps = ["vision.describe", *steps]
    # The intent of the first real step; typed words about attached audio are a transcription first.
    first = "voice.transcribe" if "audio" in atts and not spoken else tools[0].split("+")[0]
    return {"text": text, "attachments": atts, "intent": intent_of(first), "steps": steps,
            "parts": [[c, t] for c, t in zip(clauses, tools, strict=True)]}


def written_rows(src: Path = WRITTEN_SRC) -> list[dict]:
    rows, errors = [], []
    for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        tools, atts, text = (x.strip() for x in line.split("|", 2))
        try:
            rows.append(written_row([t.strip() for t in tools.split(">")],
                                    [a.strip() for a in atts.split(",") if a.strip()], text))
        except ValueError as e:
            errors.append(f"{src.name}:{n}: {e}")
    if errors:
        raise SystemExit("\n".join(errors))
    return rows


def write_written() -> None:
    rows = written_rows()
    with WRITTEN.open("w", encoding="utf-8") as f:
        for i, row in enumerate(rows, 1):
            f.write(json.dumps({"id": f"h-{i:04d}", **row}, ensure_ascii=False) + "\n")
    print(f"{len(rows)} hand-written requests -> {WRITTEN}")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # run as a script: the repo's packages
    {"--wide": append_wide, "--written": write_written}.get(sys.argv[1] if sys.argv[1:] else "", main)()
