"""The system.* tools (sync: they run in worker threads)."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from typing import Annotated, Any, Literal

import msgspec

from core.results import Image, Text, ToolResult
from core.tools import NoArgs, ToolContext, ToolError


def gui(ctx: ToolContext) -> Any:
    g = ctx.app.services.get("system") if ctx.app is not None else None
    if g is None:
        raise ToolError("the system plugin is not configured in this app")
    return g


def screenshot(args: NoArgs, ctx: ToolContext) -> ToolResult:
    """A PNG screenshot of the whole screen."""
    from PIL import ImageGrab

    g = gui(ctx)
    with g.action():
        try:
            img = ImageGrab.grab(xdisplay=g.display)
        except OSError as exc:
            raise ToolError(f"cannot grab display {g.display}: {exc}") from None
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return ToolResult(content=[Text(f"Screen {img.width}x{img.height} on {g.display}"), Image(buf.getvalue())],
                      structured={"width": img.width, "height": img.height, "display": g.display})


class Point(msgspec.Struct, forbid_unknown_fields=True):
    x: Annotated[int, msgspec.Meta(description="Pixels from the left edge")]
    y: Annotated[int, msgspec.Meta(description="Pixels from the top edge")]
    duration: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.0


def move(args: Point, ctx: ToolContext) -> dict[str, Any]:
    """Move the pointer to (x, y)."""
    g = gui(ctx)
    with g.action() as pg:
        g.check_point(pg, args.x, args.y)
        pg.moveTo(args.x, args.y, duration=args.duration)
        pos = pg.position()
    return {"x": pos[0], "y": pos[1]}


class ClickArgs(msgspec.Struct, forbid_unknown_fields=True):
    x: int
    y: int
    button: Literal["left", "middle", "right"] = "left"
    clicks: Annotated[int, msgspec.Meta(ge=1, le=3)] = 1


def click(args: ClickArgs, ctx: ToolContext) -> dict[str, Any]:
    """Click at (x, y)."""
    g = gui(ctx)
    with g.action() as pg:
        g.check_point(pg, args.x, args.y)
        pg.click(args.x, args.y, clicks=args.clicks, interval=0.05, button=args.button)
    return {"clicked": [args.x, args.y], "button": args.button, "clicks": args.clicks}


class TypeArgs(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, description="Typed into the focused window")]


def type_text(args: TypeArgs, ctx: ToolContext) -> dict[str, Any]:
    """Type text into the window that has the keyboard focus."""
    g = gui(ctx)
    if len(args.text) > g.settings.max_text:
        raise ToolError(f"text is {len(args.text)} characters; at most {g.settings.max_text} per call")
    with g.action() as pg:
        if args.text.isascii():
            for i in range(0, len(args.text), 50):  # chunks: cancellation is checked between them
                ctx.check_cancelled()
                pg.write(args.text[i:i + 50], interval=g.settings.type_interval)
        else:
            g.xdotool("type", "--delay", str(int(g.settings.type_interval * 1000)), "--", args.text,
                      timeout=30 + len(args.text) * 0.05)
    return {"typed": len(args.text)}


class HotkeyArgs(msgspec.Struct, forbid_unknown_fields=True):
    keys: Annotated[list[str], msgspec.Meta(min_length=1, max_length=5,
                                            description='Pressed together, e.g. ["ctrl", "s"] or ["enter"]')]


def hotkey(args: HotkeyArgs, ctx: ToolContext) -> dict[str, Any]:
    """Press a key or a key combination."""
    g = gui(ctx)
    with g.action() as pg:
        unknown = [k for k in args.keys if k.lower() not in pg.KEYBOARD_KEYS]
        if unknown:
            raise ToolError(f"unknown key(s) {unknown}; use names like enter, tab, esc, ctrl, alt, shift, f5, a")
        pg.hotkey(*[k.lower() for k in args.keys])
    return {"pressed": args.keys}


class OpenAppArgs(msgspec.Struct, forbid_unknown_fields=True):
    command: Annotated[str, msgspec.Meta(description="Program name on PATH (no shell)")]
    args: list[str] = []
    wait: Annotated[float, msgspec.Meta(ge=0, le=30, description="Seconds to wait for its window")] = 5.0


def open_app(args: OpenAppArgs, ctx: ToolContext) -> dict[str, Any]:
    """Start an application on the display (no shell); returns its pid and window once it shows one."""
    g = gui(ctx)
    allowed = g.settings.allowed_apps
    if allowed and args.command not in allowed:
        raise ToolError(f"{args.command!r} is not in [plugin.system] allowed_apps ({', '.join(allowed)})")
    exe = shutil.which(args.command)
    if exe is None:
        raise ToolError(f"no program {args.command!r} on PATH")
    with g.action():
        proc = subprocess.Popen([exe, *args.args], env=g.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    window = None
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and proc.poll() is None and shutil.which("xdotool"):
        ctx.check_cancelled()
        ids = g.xdotool("search", "--onlyvisible", "--pid", str(proc.pid)).split()
        if ids:
            window = _window(g, ids[0])
            break
        time.sleep(0.1)
    return {"pid": proc.pid, "running": proc.poll() is None, "window": window}


class WindowsArgs(msgspec.Struct, forbid_unknown_fields=True):
    name_contains: Annotated[str | None, msgspec.Meta(description="Only windows whose title contains this")] = None


def _window(g: Any, wid: str) -> dict[str, Any]:
    geo: dict[str, int] = {}
    for line in g.xdotool("getwindowgeometry", "--shell", wid).splitlines():
        k, _, v = line.partition("=")
        if k in ("X", "Y", "WIDTH", "HEIGHT") and v.strip().lstrip("-").isdigit():
            geo[k.lower()] = int(v)
    pid = g.xdotool("getwindowpid", wid).strip()
    return {"id": int(wid), "title": g.xdotool("getwindowname", wid).strip(), **geo,
            "pid": int(pid) if pid.isdigit() else None}


def windows(args: WindowsArgs, ctx: ToolContext) -> list[dict[str, Any]]:
    """Visible windows with title, position, size and pid (xdotool, or wmctrl when xdotool is absent)."""
    g = gui(ctx)
    if shutil.which("xdotool"):
        ids = g.xdotool("search", "--onlyvisible", "--name", ".").split()
        out = [_window(g, wid) for wid in ids]
        out = [w for w in out if w["title"]]
    elif shutil.which("wmctrl"):
        res = subprocess.run(["wmctrl", "-lpG"], env=g.env(), capture_output=True, text=True, timeout=10)
        out = []
        for line in res.stdout.splitlines():
            parts = line.split(None, 8)
            if len(parts) >= 8:
                out.append({"id": int(parts[0], 16), "pid": int(parts[2]), "x": int(parts[3]), "y": int(parts[4]),
                            "width": int(parts[5]), "height": int(parts[6]),
                            "title": parts[8] if len(parts) > 8 else ""})
    else:
        raise ToolError("listing windows needs xdotool or wmctrl: apt-get install -y xdotool")
    if args.name_contains:
        out = [w for w in out if args.name_contains.lower() in w["title"].lower()]
    return out
