"""PC control with pyautogui: screenshot, locate, move, click, type, hotkey, scroll, drag,
focus, open_app, windows. Click, type, scroll and drag take a target by its label or a
description as well as coordinates: it is found on a screenshot (``finder.py``).

Every action is destructive by annotation, and the policy plugin asks the user before
any ``system.*`` tool runs unless an operator allows it. Coordinates are checked
against the screen size, pyautogui's fail-safe is on (pointer in a corner stops it),
actions run one at a time and are rate-limited. A dedicated virtual screen is a
supported setup: ``Xvfb :99 -screen 0 1280x800x24 &`` with ``[plugin.system] display = ":99"``.
"""

from __future__ import annotations

from core.hookspecs import hookimpl
from core.tools import object_schema

from .tools import click, drag, focus, hotkey, locate, move, open_app, screenshot, scroll, type_text, windows

DOCTOR = [
    {"check": "module", "name": "pyautogui", "why": "moves the pointer and types",
     "fix": "pip install 'loomd[system]'"},
    {"check": "env", "name": "DISPLAY", "why": "an X display to control",
     "fix": "start a virtual screen: apt-get install -y xvfb && Xvfb :99 -screen 0 1280x800x24 & then "
            "export DISPLAY=:99 XAUTHORITY=/tmp/empty-xauth XDG_SESSION_TYPE=x11 (touch /tmp/empty-xauth), "
            "or set [plugin.system] display = \":99\""},
    {"check": "binary", "name": "Xvfb", "why": "a dedicated virtual screen", "fix": "apt-get install -y xvfb"},
    {"check": "binary", "name": "tesseract", "why": "finding a button by its label without a vision model",
     "fix": "apt-get install -y tesseract-ocr"},
    {"check": "binary", "name": "xdotool", "why": "system.windows, system.open_app and non-ASCII typing",
     "fix": "apt-get install -y xdotool"},
]


@hookimpl
def loom_configure(config, app):
    from .gui import Gui, SystemSettings

    app.services["system"] = Gui(config.plugin_settings("system", SystemSettings))


# Requests these tools answer, in users' words: the assistant's router learns them (issue 14).
SCROLL_EXAMPLES = [
    "scroll down", "scroll up a bit", "scroll down the page please", "can you scroll to the bottom",
    "scroll back up to the top", "scroll right in the spreadsheet", "page down a few times", "go further down the page",
    "baja la página", "haz scroll hacia abajo", "sube un poco la página", "desplázate hacia arriba",
    "fais défiler vers le bas", "remonte la page", "scroll nach unten", "scrolle bitte nach oben",
    "scorri giù la pagina", "scorri in alto", "rola a página para baixo", "desce a página um pouco",
]
FOCUS_EXAMPLES = [
    "switch to the Firefox window", "bring the terminal to the front", "go to my Slack window",
    "focus the window called Invoice.pdf", "switch over to the spreadsheet window", "put the editor window in front",
    "cambia a la ventana de Chrome", "pon delante la ventana del terminal", "ve a la ventana de Word",
    "passe à la fenêtre de Thunderbird", "affiche la fenêtre du terminal au premier plan",
    "wechsle zum Fenster von Firefox", "hol das Terminal-Fenster nach vorne", "passa alla finestra di Excel",
    "porta in primo piano la finestra del browser", "muda para a janela do Outlook",
    "traz a janela do VS Code para a frente",
]
WINDOWS_EXAMPLES = [
    "which windows are open right now?", "list the open windows", "what windows do I have open",
    "show me all the windows on my screen", "is there a Zoom window open?", "how many windows are open",
    "¿qué ventanas tengo abiertas?", "lista las ventanas abiertas", "¿hay alguna ventana de Teams abierta?",
    "quelles fenêtres sont ouvertes ?", "liste les fenêtres ouvertes", "welche Fenster sind gerade offen?",
    "zeig mir alle offenen Fenster", "quali finestre sono aperte?", "elenca le finestre aperte",
    "que janelas estão abertas?", "lista as janelas abertas",
]


@hookimpl
def loom_register_tools(register):
    register(screenshot, read_only=True, title="Screenshot of the screen",
             output_schema=object_schema(width=int, height=int, display=str))
    register(windows, read_only=True, title="List windows", examples=WINDOWS_EXAMPLES)
    register(locate, read_only=True, title="Find something on the screen")
    register(move, destructive=True, title="Move the pointer")
    register(click, destructive=True, title="Click on the screen")
    register(type_text, name="type", destructive=True, title="Type text")
    register(hotkey, destructive=True, title="Press a key combination")
    register(scroll, destructive=True, title="Scroll", examples=SCROLL_EXAMPLES)
    register(drag, destructive=True, title="Drag")
    register(focus, destructive=True, title="Focus a window", examples=FOCUS_EXAMPLES)
    register(open_app, destructive=True, title="Start an application")
