"""PC control on a real Xvfb screen with a real Tk window, behind the policy's consent."""

from __future__ import annotations

import os
import shutil
import subprocess

import anyio
import pytest

from core.config import LoomConfig
from core.tools import ToolContext, ToolDenied, ToolError

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
    pytest.skip("needs Xvfb and xdotool (apt-get install -y xvfb xdotool)", allow_module_level=True)

TK_APP = r"""
import sys, tkinter as tk
out = sys.argv[1]
root = tk.Tk()
root.title("loom-tk-target")
root.geometry("320x60+100+100")
entry = tk.Entry(root, width=40)
entry.pack(fill="both", expand=True)
def done(event):
    with open(out, "w") as f:
        f.write(entry.get())
entry.bind("<Return>", done)
root.mainloop()
"""


@pytest.fixture(scope="module")
def xvfb(x_display, x_window, tmp_path_factory):
    """The session's shared screen with this module's Tk window on it."""
    out = tmp_path_factory.mktemp("tk") / "typed.txt"

    def shown() -> bool:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "loom-tk-target"],
                               env=x_display.env, capture_output=True, text=True)
        return bool(found.stdout.strip())

    x_window(TK_APP, str(out), ready=shown)
    return {"display": x_display.display, "xauthority": x_display.xauthority, "out": out}


@pytest.fixture
def system_app(make_app, xvfb):
    def build(**policy):
        cfg = LoomConfig(plugin={"system": {"display": xvfb["display"], "xauthority": xvfb["xauthority"]},
                                 "policy": policy})
        return make_app("policy", "system", config=cfg)

    return build


async def accept(message, schema):
    return {"allow": True}


async def decline(message, schema):
    return None


async def test_typing_into_a_window_happens_only_after_consent(system_app, xvfb):
    app = system_app()
    ok = ToolContext(elicit=accept)
    async with app:
        with pytest.raises(ToolDenied, match="consent"):  # no way to ask: nothing happens
            await app.call("system.type", {"text": "sneaky"})
        with pytest.raises(ToolDenied, match="declined"):
            await app.call("system.type", {"text": "sneaky"}, ctx=ToolContext(elicit=decline))
        windows = (await app.call("system.windows", {"name_contains": "loom-tk"}, ctx=ToolContext(elicit=accept)))
        win = windows.structured["result"][0] if isinstance(windows.structured, dict) else windows.structured[0]
        assert win["title"] == "loom-tk-target" and win["width"] == 320
        cx, cy = win["x"] + win["width"] // 2, win["y"] + win["height"] // 2
        await app.call("system.click", {"x": cx, "y": cy}, ctx=ToolContext(elicit=accept))
        await app.call("system.type", {"text": "hello loom 42"}, ctx=ok)
        await app.call("system.hotkey", {"keys": ["enter"]}, ctx=ToolContext(elicit=accept))
        for _ in range(50):
            if xvfb["out"].exists():
                break
            await anyio.sleep(0.1)
    assert xvfb["out"].read_text() == "hello loom 42"  # "sneaky" never reached the window


async def test_coordinates_are_checked_and_screenshots_show_the_screen(system_app):
    app = system_app(allow=["system.*"], ask=[])
    async with app:
        with pytest.raises(ToolError, match=r"outside the screen, which is 800x600"):
            await app.call("system.move", {"x": 800, "y": 10})
        with pytest.raises(ToolError, match="outside the screen"):
            await app.call("system.click", {"x": -1, "y": 10})
        moved = await app.call("system.move", {"x": 400, "y": 300})
        shot = await app.call("system.screenshot", {})
        with pytest.raises(ToolError, match="unknown key"):
            await app.call("system.hotkey", {"keys": ["hyperdrive"]})
    assert moved.structured == {"x": 400, "y": 300}
    assert shot.structured["width"] == 800 and shot.content[1].data.startswith(b"\x89PNG")


async def test_rate_limit_and_failsafe(system_app):
    app = system_app(allow=["system.*"], ask=[])
    app.services["system"].settings.max_actions_per_minute = 3
    async with app:
        for _ in range(3):
            await app.call("system.move", {"x": 300, "y": 300})
        with pytest.raises(ToolError, match="rate limit: 3 PC actions per minute"):
            await app.call("system.move", {"x": 300, "y": 300})
    app2 = system_app(allow=["system.*"], ask=[])
    async with app2:
        await app2.call("system.move", {"x": 0, "y": 0})  # the pointer into a corner...
        with pytest.raises(ToolError, match="fail-safe"):
            await app2.call("system.click", {"x": 300, "y": 300})  # ...stops the next action
        app2.services["system"].xdotool("mousemove", "300", "300")  # the person moves it away
        await app2.call("system.click", {"x": 300, "y": 300})


async def test_open_app_starts_a_program_with_a_window(system_app):
    app = system_app(allow=["system.*"], ask=[])
    async with app:
        opened = (await app.call("system.open_app", {"command": "xterm", "args": ["-T", "loom-xterm"]})).structured
        with pytest.raises(ToolError, match="no program"):
            await app.call("system.open_app", {"command": "no-such-program-here"})
    try:
        assert opened["running"] and opened["window"]["title"] == "loom-xterm"
    finally:
        os.kill(opened["pid"], 15)
