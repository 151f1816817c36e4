"""Argument completion: the values a prompt argument or resource-template variable may take.

MCP's ``completion/complete`` (and any other surface) asks ``complete(app, name, value)``
for the argument ``name`` with the partial ``value`` typed so far. What is offered is
chosen by the argument's name, the same way for every prompt and template:

* ``model`` (and ``name`` in ``loom://models/{name}``): configured and packaged models;
* ``voice``: Piper voices the pool knows, and espeak-ng's fallback voice;
* ``tool``: registered tools (under the names MCP clients see);
* ``profile``: tool profiles;
* ``path``: files and folders inside the allowed roots (never outside them, never the
  bearer token file).

A plugin adds its own with ``app.services["completions"][arg_name] = fn(app, value) -> list[str]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

Completer = Callable[[Any, str], list[str]]

MAX_VALUES = 100  # MCP's cap on values in one answer


def _models(app: Any, value: str) -> list[str]:
    return sorted(n for n in app.pool.models() if n.startswith(value))


def _voices(app: Any, value: str) -> list[str]:
    names = [n for n, c in app.pool.models().items() if c.backend == "piper"]
    names.append("espeak")  # espeak-ng, the fallback voice (voice.voices lists espeak:<voice> too)
    return sorted(n for n in names if n.startswith(value))


def _tools(app: Any, value: str) -> list[str]:
    mcp = app.services.get("mcp")
    names = [mcp.mcp_name(n) if mcp is not None else n for n in app.tools.names()]
    return sorted(n for n in names if n.startswith(value))


def _profiles(app: Any, value: str) -> list[str]:
    from .profiles import profiles

    return sorted(n for n in profiles(app.config) if n.startswith(value))


def secret_files(config: Any) -> set[Path]:
    """Files inside the allowed roots that are never offered or served (the bearer token)."""
    explicit = config.server.token_file
    token = Path(explicit).expanduser() if explicit else config.data_dir / "token"
    try:
        return {token.resolve()}
    except OSError:
        return set()


def complete_path(roots: list[Path], value: str, *, absolute_slash: bool = True,
                  hidden: set[Path] | frozenset[Path] = frozenset()) -> list[str]:
    """Entries whose path starts with ``value``, inside ``roots`` or on the way down to one.

    ``value`` is an absolute path with or without its leading ``/`` (``absolute_slash``
    says how answers are written: the ``loom://files/{+path}`` template drops it). A
    folder is answered with a trailing ``/`` so the next completion goes inside it.
    """
    raw = value if value.startswith("/") else "/" + value
    head, _, prefix = raw.rpartition("/")
    folder = Path(head or "/")
    out: list[str] = []

    def allowed(p: Path) -> bool:
        # Inside a root, or an ancestor of one (so a client can walk down to it).
        return any(p == r or p.is_relative_to(r) or r.is_relative_to(p) for r in roots)

    try:
        real_folder = folder.resolve()
    except OSError:
        return []
    if not allowed(real_folder):
        return []
    try:
        entries = sorted(os.scandir(real_folder), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix.startswith(".")):
            continue
        path = Path(entry.path)
        try:
            real = path.resolve()
        except OSError:
            continue
        if not allowed(real) or real in hidden:
            continue
        is_dir = entry.is_dir()
        if is_dir is False and not any(real.is_relative_to(r) for r in roots):
            continue  # a file beside a root, not inside it
        shown = f"{head}/{entry.name}{'/' if is_dir else ''}"
        out.append(shown if absolute_slash else shown.lstrip("/"))
        if len(out) > MAX_VALUES:
            break
    return out


def _paths(app: Any, value: str) -> list[str]:
    return complete_path(app.config.allowed_roots(), value, absolute_slash=value.startswith("/"),
                         hidden=secret_files(app.config))


BUILTIN: dict[str, Completer] = {
    "model": _models,
    "voice": _voices,
    "tool": _tools,
    "tool_name": _tools,
    "profile": _profiles,
    "path": _paths,
}


def complete(app: Any, name: str, value: str, *, ref: str | None = None) -> list[str]:
    """Values for argument ``name`` starting with ``value``. ``ref`` is the prompt name or
    resource template the argument belongs to (``loom://models/{name}`` completes models)."""
    extra: dict[str, Completer] = app.services.get("completions") or {}
    fn = extra.get(name) or BUILTIN.get(name)
    if fn is None and name == "name" and ref is not None and ref.startswith("loom://models/"):
        fn = _models
    if fn is None:
        return []
    try:
        return list(fn(app, value or ""))
    except Exception:  # a completion must never fail the request: offer nothing
        return []
