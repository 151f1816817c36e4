"""PC control that sees: a real Tk window on Xvfb, its buttons found by their labels on a
screenshot (tesseract OCR word boxes: no vision model runs here), clicked under the
consent policy, and the click checked in the window itself. Also scroll, drag, key
combinations and window focus, each checked in the window."""

from __future__ import annotations

import json
import shutil
import time
from types import SimpleNamespace

import anyio
import msgspec
import pytest

from core.config import LoomConfig
from core.hookspecs import hookimpl
from core.tools import ToolContext, ToolDenied, ToolError

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

if not all(shutil.which(b) for b in ("Xvfb", "xdotool", "tesseract")):
    pytest.skip("needs Xvfb, xdotool and tesseract (apt-get install -y xvfb xdotool tesseract-ocr)",
                allow_module_level=True)

# Every event the window sees is appended to the log as one JSON line.
TK_APP = r"""
import json, sys, tkinter as tk
log = open(sys.argv[1], "a", buffering=1)
def note(**kw):
    log.write(json.dumps(kw) + "\n")
root = tk.Tk()
root.title("loom-locate-target")
root.geometry("520x300+60+60")
font = ("DejaVu Sans", 20)
bar = tk.Frame(root); bar.pack(side="top", fill="x", pady=10)
for label in ("Open", "Save", "Cancel"):
    b = tk.Button(bar, text=label, font=font, command=lambda label=label: note(clicked=label))
    b.pack(side="left", padx=18)
canvas = tk.Canvas(root, width=500, height=160, bg="white"); canvas.pack()
canvas.create_rectangle(20, 40, 80, 100, fill="blue", tags="box")
def drop(event):
    note(dropped=[event.x, event.y])
canvas.bind("<ButtonRelease-1>", drop)
canvas.bind("<Button-4>", lambda e: note(scrolled="up"))
canvas.bind("<Button-5>", lambda e: note(scrolled="down"))
root.bind_all("<Control-s>", lambda e: note(hotkey="ctrl+s"))
root.bind("<FocusIn>", lambda e: note(focus=True) if e.widget is root else None)
def placed():
    for b in bar.winfo_children():
        note(button=b.cget("text"), x=b.winfo_rootx(), y=b.winfo_rooty(), w=b.winfo_width(), h=b.winfo_height())
    note(canvas=[canvas.winfo_rootx(), canvas.winfo_rooty()])
root.after(300, placed)
root.mainloop()
"""


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


async def _wait_for(path, key, value=None, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in _events(path):
            if key in e and (value is None or e[key] == value):
                return e
        await anyio.sleep(0.05)
    raise AssertionError(f"the window never saw {key}={value!r}; it saw {_events(path)}")


@pytest.fixture(scope="module")
def screen(x_display, x_window, tmp_path_factory):
    """The session's shared screen (one per run: pyautogui binds one display per process)
    with this module's Tk window on it, its widgets' places read from the window's log."""
    log = tmp_path_factory.mktemp("tk") / "events.jsonl"
    x_window(TK_APP, str(log), ready=lambda: any("canvas" in e for e in _events(log)))
    buttons = {e["button"]: e for e in _events(log) if "button" in e}
    canvas = next(e["canvas"] for e in _events(log) if "canvas" in e)
    return SimpleNamespace(display=x_display.display, xauthority=x_display.xauthority, log=log, buttons=buttons,
                           canvas=canvas)


@pytest.fixture
def build(make_app, screen):
    def build(*plugins, extra=None, **policy):
        cfg = LoomConfig(plugin={"system": {"display": screen.display, "xauthority": screen.xauthority},
                                 "policy": policy,
                                 "assistant": {"llm_fallback": False}})
        return make_app("policy", "system", *plugins, extra=extra, config=cfg)

    return build


def _inside(point, box) -> bool:
    x, y = point
    return box["x"] <= x < box["x"] + box["w"] and box["y"] <= y < box["y"] + box["h"]


async def accept(message, schema):
    return {"allow": True}


async def test_a_button_is_found_by_its_label_and_clicked_after_consent(build, screen):
    app = build(ask=["system.click"], allow=["system.locate"])  # looking is allowed here; clicking asks
    async with app:
        found = (await app.call("system.locate", {"target": "the Save button"})).structured
        assert found["engine"] == "ocr" and found["matched"] == "Save"
        assert _inside((found["x"], found["y"]), screen.buttons["Save"])
        with pytest.raises(ToolDenied, match="consent"):  # the policy asks; nobody can answer: nothing happens
            await app.call("system.click", {"target": "the Save button"})
        await anyio.sleep(0.3)
        assert not any(e.get("clicked") for e in _events(screen.log))
        out = (await app.call("system.click", {"target": "Cancel"}, ctx=ToolContext(elicit=accept))).structured
    assert _inside(out["clicked"], screen.buttons["Cancel"]) and out["located"]["matched"] == "Cancel"
    await _wait_for(screen.log, "clicked", "Cancel")


async def test_a_target_not_on_screen_is_a_clear_error(build):
    app = build(allow=["system.*"], ask=[])
    async with app:
        with pytest.raises(ToolError, match=r"could not find 'Publish' on the screen \(OCR\)\. Words seen: .*Save"):
            await app.call("system.click", {"target": "the Publish button"})
        with pytest.raises(ToolError, match="give x and y, or a target"):
            await app.call("system.click", {})


async def test_assistant_plans_the_click_by_description_and_it_lands(build, screen):
    app = build("assistant", allow=["system.*"], ask=[])
    async with app:
        out = (await app.call("assistant.ask", {"text": "Click the Open button."})).structured
    assert out["steps"] == ["system.click"]
    await _wait_for(screen.log, "clicked", "Open")


async def test_scroll_drag_hotkey_and_focus_reach_the_window(build, screen):
    app = build(allow=["system.*"], ask=[])
    cx, cy = screen.canvas
    async with app:
        focused = (await app.call("system.focus", {"window": "loom-locate-target"})).structured
        await app.call("system.hotkey", {"keys": ["ctrl+s"]})
        await app.call("system.scroll", {"target": "scroll down", "x": cx + 250, "y": cy + 80, "amount": 2})
        await app.call("system.scroll", {"direction": "up", "x": cx + 250, "y": cy + 80, "amount": 1})
        dragged = (await app.call("system.drag", {"from_x": cx + 50, "from_y": cy + 70, "to_x": cx + 300,
                                                   "to_y": cy + 120})).structured
        with pytest.raises(ToolError, match="no visible window matches"):
            await app.call("system.focus", {"window": "no such window"})
    assert focused["title"] == "loom-locate-target" and focused["focused"]
    await _wait_for(screen.log, "hotkey", "ctrl+s")
    await _wait_for(screen.log, "scrolled", "down")
    await _wait_for(screen.log, "scrolled", "up")
    drop = await _wait_for(screen.log, "dropped")
    assert dragged["to"] == [cx + 300, cy + 120] and abs(drop["dropped"][0] - 300) <= 2


class AnswerArgs(msgspec.Struct, forbid_unknown_fields=True):
    image: str
    question: str


async def test_with_a_vision_model_the_point_comes_from_it(make_app, screen):
    """The vision path, with a stand-in for the VLM (none runs here) that answers like
    Qwen3-VL on a 0-1000 grid; the click must land where it pointed."""
    asked = []
    save = screen.buttons["Save"]
    cx, cy = save["x"] + save["w"] // 2, save["y"] + save["h"] // 2

    async def answer(args: AnswerArgs) -> str:
        asked.append(args.question)
        return json.dumps({"x": round(cx * 1000 / 800), "y": round(cy * 1000 / 600)})

    from core.config import ModelConfig

    vision = SimpleNamespace(loom_register_tools=hookimpl(lambda register: register(answer, read_only=True)))
    cfg = LoomConfig(plugin={"system": {"display": screen.display, "xauthority": screen.xauthority,
                                        "vision_coords": "norm1000"}, "policy": {"allow": ["system.*"], "ask": []}},
                     models={"vlm": ModelConfig(backend="llama_cpp", file="/nonexistent/vlm.gguf", role="vlm")})
    app = make_app("policy", "system", extra={"vision": vision}, config=cfg)
    async with app:
        out = (await app.call("system.click", {"target": "the Save button"})).structured
    assert out["located"]["engine"] == "vision" and "800 pixels wide and 600 pixels high" in asked[0]
    assert _inside(out["clicked"], save)
    await _wait_for(screen.log, "clicked", "Save")
