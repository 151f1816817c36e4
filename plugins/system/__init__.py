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


@hookimpl
def loom_register_tools(register):
    register(screenshot, read_only=True, title="Screenshot of the screen",
             output_schema=object_schema(width=int, height=int, display=str))
    register(windows, read_only=True, title="List windows")
    register(locate, read_only=True, title="Find something on the screen")
    register(move, destructive=True, title="Move the pointer")
    register(click, destructive=True, title="Click on the screen")
    register(type_text, name="type", destructive=True, title="Type text")
    register(hotkey, destructive=True, title="Press a key combination")
    register(scroll, destructive=True, title="Scroll")
    register(drag, destructive=True, title="Drag")
    register(focus, destructive=True, title="Focus a window")
    register(open_app, destructive=True, title="Start an application")
