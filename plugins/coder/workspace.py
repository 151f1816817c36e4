"""Files the coder may touch: confinement to the workspace roots, capped reads, diffs, writes."""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

from core import paths
from core.tools import ToolError

LANGUAGES = {
    ".py": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript", ".tsx": "tsx",
    ".jsx": "jsx", ".rs": "rust", ".go": "go", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".hpp": "cpp", ".java": "java", ".kt": "kotlin", ".rb": "ruby", ".php": "php", ".sh": "bash",
    ".html": "html", ".css": "css", ".sql": "sql", ".json": "json", ".toml": "toml", ".yaml": "yaml",
    ".yml": "yaml", ".md": "markdown", ".swift": "swift", ".cs": "csharp", ".lua": "lua",
}


def language_of(path: Path) -> str:
    return LANGUAGES.get(path.suffix.lower(), "text")


def confine(path: str, roots: list[Path]) -> Path:
    """``path`` resolved (symlinks too) and checked to lie inside one of ``roots``.

    A relative path is taken from the first root (the working directory by default).
    """
    return paths.confine(path, roots, where="the workspace roots")


def display(p: Path, roots: list[Path]) -> str:
    """The path relative to its root, for prompts and diff headers."""
    for root in roots:
        if p.is_relative_to(root):
            return p.relative_to(root).as_posix()
    return p.name


def read_text(p: Path, limit: int) -> str:
    if not p.exists():
        raise ToolError(f"{p} does not exist")
    if not p.is_file():
        raise ToolError(f"{p} is not a regular file")
    size = p.stat().st_size
    if size > limit:
        raise ToolError(f"{p} is {size} bytes; the coder reads files up to {limit} bytes "
                        "(raise [plugin.coder] max_file_bytes to allow more)")
    data = p.read_bytes()
    if b"\x00" in data[:8192]:
        raise ToolError(f"{p} looks like a binary file; the coder works on text files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{p} is not UTF-8 text") from None


def unified_diff(old: str, new: str, name: str) -> str:
    a = old.splitlines(keepends=True)
    b = new.splitlines(keepends=True)
    lines = []
    for line in difflib.unified_diff(a, b, fromfile=f"a/{name}", tofile=f"b/{name}"):
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(lines)


def write_atomic(p: Path, text: str) -> None:
    """Replace the file in one step (a crash never leaves half a file), keeping its mode."""
    mode = p.stat().st_mode & 0o7777 if p.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".loom", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
