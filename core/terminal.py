"""What the CLI shows a person at a terminal, and what it leaves out when piped.

* ``Status``: one honest progress line on stderr: a bar when the tool reports a real
  total, a spinner with the count when it does not, redrawn in place; nothing at all
  when stderr is not a terminal or ``-q`` was given.
* ``confirm``: a y/N question asked on the terminal (consent for destructive tools);
  False, without asking, when nobody is there to answer.
* ``unique_path``: output file names taken from the request, never overwriting a file.
* ``highlight``: code coloured for a terminal (pygments when installed), plain otherwise.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Status:
    """One status line on stderr, redrawn in place; silent unless stderr is a terminal."""

    def __init__(self, label: str = "", *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and _isatty(self.stream)
        self.label = label
        self._tick = 0
        self._shown = False
        self._last_draw = 0.0

    def update(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.05 and not (total and progress >= total):
            return  # token streams report hundreds of times a second: a terminal needs ~20
        self._last_draw = now
        text = " ".join((message or "").split())  # streamed fragments may hold newlines
        if total and total > 0 and 0 <= progress <= total:
            width = 24
            filled = round(width * progress / total)
            head = f"[{'#' * filled}{'-' * (width - filled)}] {100 * progress / total:3.0f}%"
        else:
            self._tick += 1
            head = f"{SPINNER[self._tick % len(SPINNER)]} {progress:g}"
        self._draw(f"{self.label} {head} {text}".strip())

    def note(self, message: str) -> None:
        """A line that stays (a finished step), printed above the status line."""
        if not self.enabled:
            return
        self.clear()
        print(message, file=self.stream, flush=True)

    def spin(self, message: str) -> None:
        """A spinner with a message and no count (waiting for something with no size)."""
        if not self.enabled:
            return
        self._tick += 1
        self._draw(f"{self.label} {SPINNER[self._tick % len(SPINNER)]} {message}".strip())

    def _draw(self, line: str) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        self.stream.write(f"\r{line[:width].ljust(width)}")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            width = max(20, shutil.get_terminal_size().columns - 1)
            self.stream.write("\r" + " " * width + "\r")
            self.stream.flush()
            self._shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def interactive() -> bool:
    """A person can answer: stdin and stderr are both terminals."""
    return _isatty(sys.stdin) and _isatty(sys.stderr)


def confirm(message: str, *, stream: TextIO | None = None) -> bool:
    """Ask ``message`` with y/N on the terminal; False when not interactive or on EOF."""
    out = stream or sys.stderr
    if not interactive():
        return False
    print(message, file=out, flush=True)
    try:
        out.write("Allow? [y/N] ")
        out.flush()
        answer = sys.stdin.readline()
    except (EOFError, KeyboardInterrupt):
        print(file=out)
        return False
    return answer.strip().lower() in ("y", "yes")


_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, *, limit: int = 40, fallback: str = "output") -> str:
    """A file-name stem from a request: ``"A red lighthouse, at dusk"`` -> ``a-red-lighthouse-at-dusk``."""
    words = _SLUG.sub("-", text.lower()).strip("-")
    if len(words) > limit:
        words = words[:limit].rsplit("-", 1)[0] or words[:limit]
    return words or fallback


def unique_path(directory: Path, stem: str, suffix: str) -> Path:
    """``directory/stem.suffix``, or ``stem-2.suffix``, ``stem-3``... whichever does not exist yet."""
    directory.mkdir(parents=True, exist_ok=True)
    candidate = directory / f"{stem}{suffix}"
    n = 2
    while candidate.exists():
        candidate = directory / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def highlight(code: str, language: str | None, *, stream: TextIO | None = None) -> str:
    """``code`` with terminal colours when ``stream`` is a terminal and pygments is installed."""
    if not _isatty(stream or sys.stdout):
        return code
    try:
        from pygments import highlight as _hl
        from pygments.formatters import TerminalFormatter
        from pygments.lexers import get_lexer_by_name, guess_lexer
        from pygments.util import ClassNotFound
    except ImportError:
        return code
    try:
        lexer = get_lexer_by_name(language) if language else guess_lexer(code)
    except ClassNotFound:
        return code
    return _hl(code, lexer, TerminalFormatter()).rstrip("\n")
