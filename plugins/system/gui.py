"""pyautogui on a configured X display: one action at a time, rate-limited, fail-safe on."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import deque
from typing import Any, Literal

import msgspec

from core.tools import ToolError


class SystemSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.system]``."""

    display: str | None = None  # e.g. ":99" for a dedicated Xvfb; default: $DISPLAY
    xauthority: str | None = None  # default: $XAUTHORITY
    max_actions_per_minute: int = 120
    min_interval: float = 0.05  # seconds between two actions
    type_interval: float = 0.01  # seconds between typed keys
    max_text: int = 2000  # characters system.type accepts in one call
    allowed_apps: list[str] = []  # programs system.open_app may start; empty: any on PATH
    locate_engine: Literal["auto", "vision", "ocr"] = "auto"  # auto: the vision model when configured, else OCR
    vision_coords: Literal["pixels", "norm1000"] = "pixels"  # how the vision model answers (Qwen3-VL: norm1000)


class Gui:
    def __init__(self, settings: SystemSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self._last = 0.0

    @property
    def display(self) -> str:
        d = self.settings.display or os.environ.get("DISPLAY")
        if not d:
            raise ToolError("no X display: set [plugin.system] display (e.g. \":99\") or $DISPLAY. To get a "
                            "virtual screen: Xvfb :99 -screen 0 1280x800x24 &  (apt-get install -y xvfb)")
        return d

    def env(self) -> dict[str, str]:
        env = {**os.environ, "DISPLAY": self.display}
        if self.settings.xauthority:
            env["XAUTHORITY"] = self.settings.xauthority
        return env

    def pyautogui(self) -> Any:
        """pyautogui bound to the configured display (it opens its X connection at import)."""
        display = self.display
        os.environ["DISPLAY"] = display
        if self.settings.xauthority:
            os.environ["XAUTHORITY"] = self.settings.xauthority
        os.environ.setdefault("XDG_SESSION_TYPE", "x11")
        try:
            import pyautogui
            from pyautogui import _pyautogui_x11 as x11
        except ImportError:
            raise ToolError("PC control needs pyautogui: pip install 'loomd[system]'") from None
        except Exception as exc:  # Xlib cannot connect
            raise ToolError(f"cannot open X display {display}: {exc}. Start one with "
                            f"`Xvfb {display} -screen 0 1280x800x24 &`") from None
        if getattr(x11, "_loom_display", display) != display:
            from Xlib.display import Display

            x11._display = Display(display)
        x11._loom_display = display
        pyautogui.FAILSAFE = True  # pointer in a corner stops everything
        pyautogui.PAUSE = 0.0  # pacing is ours (min_interval)
        return pyautogui

    def action(self) -> Any:
        """Context for one action: serialised, paced, counted against the rate limit."""
        gui = self

        class _Action:
            def __enter__(self_inner) -> Any:
                gui._lock.acquire()
                try:
                    now = time.monotonic()
                    while gui._recent and now - gui._recent[0] > 60:
                        gui._recent.popleft()
                    if len(gui._recent) >= gui.settings.max_actions_per_minute:
                        wait = 60 - (now - gui._recent[0])
                        raise ToolError(f"rate limit: {gui.settings.max_actions_per_minute} PC actions per minute; "
                                        f"try again in {wait:.0f} s")
                    pause = gui.settings.min_interval - (now - gui._last)
                    if pause > 0:
                        time.sleep(pause)
                    gui._recent.append(time.monotonic())
                    return gui.pyautogui()
                except BaseException:
                    gui._lock.release()
                    raise

            def __exit__(self_inner, exc_type: Any, exc: Any, tb: Any) -> None:
                gui._last = time.monotonic()
                gui._lock.release()
                if exc is not None and type(exc).__name__ == "FailSafeException":
                    raise ToolError("pyautogui's fail-safe stopped the action: the pointer is in a screen corner. "
                                    "Move it away from the corner to resume") from None

        return _Action()

    def check_point(self, pg: Any, x: int, y: int) -> None:
        width, height = pg.size()
        if not (0 <= x < width and 0 <= y < height):
            raise ToolError(f"({x}, {y}) is outside the screen, which is {width}x{height} "
                            f"(x from 0 to {width - 1}, y from 0 to {height - 1})")

    def xdotool(self, *args: str, timeout: float = 10) -> str:
        if shutil.which("xdotool") is None:
            raise ToolError("this needs xdotool: apt-get install -y xdotool")
        try:
            out = subprocess.run(["xdotool", *args], env=self.env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"xdotool {args[0]} took longer than {timeout:g} s") from None
        return out.stdout if out.returncode == 0 else ""
