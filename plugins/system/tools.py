"""The system.* tools. Pointer and keyboard work runs in worker threads; the tools that
may locate a target on the screen first (click, type, scroll, drag) are async, because
locating may ask the vision model (see ``finder.py``)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import time
from typing import Annotated, Any, Literal

import anyio
import msgspec

from core.results import Image, Text, ToolResult
from core.tools import NoArgs, ToolContext, ToolError


def gui(ctx: ToolContext) -> Any:
    g = ctx.app.services.get("system") if ctx.app is not None else None
    if g is None:
        raise ToolError("the system plugin is not configured in this app")
    return g


def grab(g: Any) -> Any:
    """The whole screen as a PIL image."""
    from PIL import ImageGrab

    with g.action():
        try:
            return ImageGrab.grab(xdisplay=g.display)
        except OSError as exc:
            raise ToolError(f"cannot grab display {g.display}: {exc}") from None


def screenshot(args: NoArgs, ctx: ToolContext) -> ToolResult:
    """A PNG screenshot of the whole screen."""
    g = gui(ctx)
    img = grab(g)
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


Target = Annotated[str, msgspec.Meta(min_length=1, max_length=500, description=(
    "what to act on, by its label or a description (\"the Save button\", \"Sign in\"): a screenshot is "
    "taken and the target located (vision model when configured, else OCR)"))]


class LocateArgs(msgspec.Struct, forbid_unknown_fields=True):
    target: Target


async def find(ctx: ToolContext, description: str) -> Any:
    """Screenshot, then locate ``description`` (vision model when configured, else OCR)."""
    from .finder import locate_ocr, parse_vision_point, vision_prompt

    g = gui(ctx)
    img = await anyio.to_thread.run_sync(lambda: grab(g))
    engine = g.settings.locate_engine
    if engine != "ocr" and _has_vlm(ctx):
        from .finder import Found

        buf = io.BytesIO()
        img.save(buf, "PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        question = vision_prompt(description, img.width, img.height, g.settings.vision_coords)
        sub = ToolContext(surface=ctx.surface, correlation_id=ctx.correlation_id, caller=ctx.caller,
                          cancelled=ctx.cancelled, extra=dict(ctx.extra))
        answer = (await ctx.app.call("vision.answer", {"image": url, "question": question}, ctx=sub)).text()
        point = parse_vision_point(answer, img.width, img.height, g.settings.vision_coords)
        if point is not None:
            return Found(point[0], point[1], (point[0], point[1], 1, 1), answer.strip()[:200], "vision", 1.0)
        if engine == "vision":
            raise ToolError(f"the vision model did not find {description!r} on the screen: {answer.strip()[:200]}")
    elif engine == "vision":
        raise ToolError("[plugin.system] locate_engine = \"vision\" needs a vision model (role \"vlm\") and the "
                        "vision plugin; use \"auto\" to fall back to OCR")
    return await anyio.to_thread.run_sync(lambda: locate_ocr(img, description))


def _has_vlm(ctx: ToolContext) -> bool:
    if "vision.answer" not in ctx.app.tools:
        return False
    try:
        ctx.app.pool.model_for("vlm")
    except Exception:
        return False
    return True


async def locate(args: LocateArgs, ctx: ToolContext) -> dict[str, Any]:
    """Find something on the screen by its label or a description: its centre (x, y) and box."""
    return (await find(ctx, args.target)).as_dict()


async def _point(ctx: ToolContext, x: int | None, y: int | None, target: str | None,
                 what: str = "x and y") -> tuple[int, int, Any]:
    if x is not None and y is not None:
        return x, y, None
    if not target:
        raise ToolError(f"give {what}, or a target to find on the screen (e.g. \"the Save button\")")
    found = await find(ctx, target)
    return found.x, found.y, found


class ClickArgs(msgspec.Struct, forbid_unknown_fields=True):
    x: int | None = None
    y: int | None = None
    target: Target | None = None
    button: Literal["left", "middle", "right"] = "left"
    clicks: Annotated[int, msgspec.Meta(ge=1, le=3)] = 1


async def click(args: ClickArgs, ctx: ToolContext) -> dict[str, Any]:
    """Click at (x, y), or on a target found on the screen by its label or a description."""
    g = gui(ctx)
    x, y, found = await _point(ctx, args.x, args.y, args.target)

    def act() -> None:
        with g.action() as pg:
            g.check_point(pg, x, y)
            pg.click(x, y, clicks=args.clicks, interval=0.05, button=args.button)

    await anyio.to_thread.run_sync(act)
    out: dict[str, Any] = {"clicked": [x, y], "button": args.button, "clicks": args.clicks}
    if found is not None:
        out["located"] = found.as_dict()
    return out


class TypeArgs(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, description="Typed into the focused window")]
    into: Annotated[str, msgspec.Meta(min_length=1, max_length=500, description=(
        "a field to click first, by its label or a description (located on a screenshot)"))] | None = None


async def type_text(args: TypeArgs, ctx: ToolContext) -> dict[str, Any]:
    """Type text into the window that has the keyboard focus (or into a field found by its label first)."""
    g = gui(ctx)
    if len(args.text) > g.settings.max_text:
        raise ToolError(f"text is {len(args.text)} characters; at most {g.settings.max_text} per call")
    out: dict[str, Any] = {}
    if args.into:
        found = await find(ctx, args.into)
        out["located"] = found.as_dict()

        def focus() -> None:
            with g.action() as pg:
                pg.click(found.x, found.y)

        await anyio.to_thread.run_sync(focus)

    def act() -> None:
        with g.action() as pg:
            if args.text.isascii():
                for i in range(0, len(args.text), 50):  # chunks: cancellation is checked between them
                    ctx.check_cancelled()
                    pg.write(args.text[i:i + 50], interval=g.settings.type_interval)
            else:
                g.xdotool("type", "--delay", str(int(g.settings.type_interval * 1000)), "--", args.text,
                          timeout=30 + len(args.text) * 0.05)

    await anyio.to_thread.run_sync(act)
    return {"typed": len(args.text), **out}


class HotkeyArgs(msgspec.Struct, forbid_unknown_fields=True):
    keys: Annotated[list[str], msgspec.Meta(min_length=1, max_length=5,
                                            description='Pressed together, e.g. ["ctrl", "s"], ["enter"] or '
                                                        '["ctrl+shift+t"]')]


_KEY_ALIASES = {"control": "ctrl", "cmd": "command", "return": "enter", "escape": "esc", "del": "delete",
                "windows": "win", "super": "win", "option": "alt", "pgup": "pageup", "pgdn": "pagedown",
                "spacebar": "space", "ctl": "ctrl"}


def key_names(keys: list[str]) -> list[str]:
    """["ctrl+s"] or ["Control", "S"] -> ["ctrl", "s"]."""
    out = []
    for k in keys:
        for part in re.split(r"\s*\+\s*", k.strip()) if len(k.strip()) > 1 else [k]:
            if part:
                low = part.lower()
                out.append(_KEY_ALIASES.get(low, low))
    return out


def hotkey(args: HotkeyArgs, ctx: ToolContext) -> dict[str, Any]:
    """Press a key or a key combination."""
    g = gui(ctx)
    keys = key_names(args.keys)
    with g.action() as pg:
        unknown = [k for k in keys if k not in pg.KEYBOARD_KEYS]
        if unknown:
            raise ToolError(f"unknown key(s) {unknown}; use names like enter, tab, esc, ctrl, alt, shift, f5, a")
        pg.hotkey(*keys)
    return {"pressed": keys}


class ScrollArgs(msgspec.Struct, forbid_unknown_fields=True):
    direction: Literal["up", "down", "left", "right"] | None = None
    amount: Annotated[int, msgspec.Meta(ge=1, le=100, description="wheel steps")] = 5
    x: int | None = None
    y: int | None = None
    target: Annotated[str, msgspec.Meta(max_length=500, description=(
        "where to scroll, by label or description, or the request itself (\"scroll down in the editor\")"))] \
        | None = None


_DIRECTION = re.compile(r"\b(up|down|left|right|arriba|abajo|izquierda|derecha)\b", re.I)


async def scroll(args: ScrollArgs, ctx: ToolContext) -> dict[str, Any]:
    """Scroll the mouse wheel (up, down, left, right), over a point or a target found on the screen."""
    g = gui(ctx)
    direction, target = args.direction, args.target
    if target and re.match(r"^\s*(?:please\s+)?(?:scroll|desplaza)", target, re.I):  # the request itself
        m = _DIRECTION.search(target)
        if m and direction is None:
            direction = {"arriba": "up", "abajo": "down", "izquierda": "left", "derecha": "right"}.get(
                m.group(1).lower(), m.group(1).lower())
        where = re.search(r"\b(?:in|on|over|en)\s+(?:the\s+)?(.+)$", target, re.I)
        target = where.group(1) if where else None
    direction = direction or "down"
    found = None
    if args.x is not None and args.y is not None:
        x, y = args.x, args.y
    elif target:
        x, y, found = await _point(ctx, None, None, target)
    else:
        x = y = None
    steps = args.amount if direction in ("up", "left") else -args.amount

    def act() -> None:
        with g.action() as pg:
            if x is not None:
                g.check_point(pg, x, y)
                pg.moveTo(x, y)
            if direction in ("up", "down"):
                pg.scroll(steps)
            else:
                pg.hscroll(-steps)

    await anyio.to_thread.run_sync(act)
    out: dict[str, Any] = {"scrolled": direction, "amount": args.amount}
    if x is not None:
        out["at"] = [x, y]
    if found is not None:
        out["located"] = found.as_dict()
    return out


class DragArgs(msgspec.Struct, forbid_unknown_fields=True):
    from_x: int | None = None
    from_y: int | None = None
    to_x: int | None = None
    to_y: int | None = None
    source: Target | None = None
    destination: Target | None = None
    button: Literal["left", "middle", "right"] = "left"
    duration: Annotated[float, msgspec.Meta(ge=0.05, le=5)] = 0.4


async def drag(args: DragArgs, ctx: ToolContext) -> dict[str, Any]:
    """Drag with a button held, from a point or target to a point or target."""
    g = gui(ctx)
    x0, y0, a = await _point(ctx, args.from_x, args.from_y, args.source, "from_x and from_y")
    x1, y1, b = await _point(ctx, args.to_x, args.to_y, args.destination, "to_x and to_y")

    def act() -> None:
        with g.action() as pg:
            g.check_point(pg, x0, y0)
            g.check_point(pg, x1, y1)
            pg.moveTo(x0, y0)
            pg.dragTo(x1, y1, duration=args.duration, button=args.button)

    await anyio.to_thread.run_sync(act)
    out: dict[str, Any] = {"from": [x0, y0], "to": [x1, y1]}
    if a is not None or b is not None:
        out["located"] = {"source": a.as_dict() if a else None, "destination": b.as_dict() if b else None}
    return out


class FocusArgs(msgspec.Struct, forbid_unknown_fields=True):
    window: Annotated[str, msgspec.Meta(min_length=1, max_length=300, description=(
        "a window title (or part of it), or a window id from system.windows"))]


def focus(args: FocusArgs, ctx: ToolContext) -> dict[str, Any]:
    """Bring a window to the front and give it the keyboard focus."""
    g = gui(ctx)
    if args.window.isdigit():
        ids = [args.window]
    else:
        ids = g.xdotool("search", "--onlyvisible", "--name", re.escape(args.window)).split()
    if not ids:
        titles = [w["title"] for w in windows(WindowsArgs(), ctx)]
        raise ToolError(f"no visible window matches {args.window!r}; windows: {', '.join(titles) or 'none'}")
    wid = ids[0]
    with g.action():
        g.xdotool("windowactivate", "--sync", wid, timeout=5)  # needs a window manager
        g.xdotool("windowraise", wid)
        g.xdotool("windowfocus", "--sync", wid, timeout=5)  # works without one
    focused = g.xdotool("getwindowfocus").strip()
    return {**_window(g, wid), "focused": focused == wid}


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
