"""PC control with pyautogui: screenshot, move, click, type, hotkey, open_app, windows.

Every action is destructive by annotation, and the policy plugin asks the user before
any ``system.*`` tool runs unless an operator allows it. Coordinates are checked
against the screen size, pyautogui's fail-safe is on (pointer in a corner stops it),
actions run one at a time and are rate-limited. A dedicated virtual screen is a
supported setup: ``Xvfb :99 -screen 0 1280x800x24 &`` with ``[plugin.system] display = ":99"``.
"""

from __future__ import annotations

from core.hookspecs import hookimpl
from core.tools import object_schema

from .tools import click, hotkey, move, open_app, screenshot, type_text, windows

DOCTOR = [
    {"check": "module", "name": "pyautogui", "why": "moves the pointer and types",
     "fix": "pip install 'loomd[system]'"},
    {"check": "env", "name": "DISPLAY", "why": "an X display to control",
     "fix": "start a virtual screen: apt-get install -y xvfb && Xvfb :99 -screen 0 1280x800x24 & then "
            "export DISPLAY=:99 XAUTHORITY=/tmp/empty-xauth XDG_SESSION_TYPE=x11 (touch /tmp/empty-xauth), "
            "or set [plugin.system] display = \":99\""},
    {"check": "binary", "name": "Xvfb", "why": "a dedicated virtual screen", "fix": "apt-get install -y xvfb"},
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
    register(move, destructive=True, title="Move the pointer")
    register(click, destructive=True, title="Click on the screen")
    register(type_text, name="type", destructive=True, title="Type text")
    register(hotkey, destructive=True, title="Press a key combination")
    register(open_app, destructive=True, title="Start an application")
