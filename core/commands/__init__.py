"""Subcommands of ``loom``: each module has HELP, ``add_arguments(parser)`` and ``run(args)``.

Shared here: building the app, and ``connect``, the switch every work command goes
through: the running daemon when there is one (``DaemonTarget``), else this process
(``LocalTarget``, said once on stderr), or this process always with ``--local``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from core.results import ToolResult


def make_app(args: argparse.Namespace, **kw: Any) -> Any:
    """Build the application from ``--config`` (shared by every command)."""
    from core.app import Loom
    from core.config import load_config

    kw.setdefault("configure_logs", False)  # core.cli configured them for a terminal (-v/-q)
    return Loom.create(load_config(getattr(args, "config", None)), **kw)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def say(args: argparse.Namespace, message: str) -> None:
    """A note for the person on stderr (silenced by -q)."""
    if not getattr(args, "quiet", False):
        print(f"loom: {message}", file=sys.stderr, flush=True)


def add_request_arguments(p: argparse.ArgumentParser, *, text_help: str) -> None:
    """The request a user types and the files sent with it (``loom ask``, ``loom route``)."""
    p.add_argument("text", nargs="?", default="", help=text_help + " (read from stdin when piped and omitted)")
    p.add_argument("--attach", action="append", default=[], metavar="PATH",
                   help="a file sent with the request (image, video, audio, document); repeatable")


def add_local_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local", action="store_true",
                   help="run in this process even when a daemon is running (by default the work goes to it)")


def absolute(paths: list[str]) -> list[str]:
    """Attachment paths as the daemon must see them (its working directory is not ours)."""
    from pathlib import Path

    return [str(Path(p).expanduser().absolute()) for p in paths]


def request_text(args: argparse.Namespace) -> str:
    """The request: the argument, else stdin when it is piped (``echo q | loom ask``)."""
    if args.text or sys.stdin is None or sys.stdin.isatty():
        return args.text
    return sys.stdin.read().strip()


# --- where tool calls run ------------------------------------------------------------------


async def terminal_ask(message: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """Answer a consent question (an elicitation) at the terminal: y/N for the usual yes/no
    form, one line per field otherwise. None (declined) when nobody can answer."""
    import anyio

    from core.terminal import confirm, interactive

    if not interactive():
        return None
    props = schema.get("properties", {})
    if len(props) == 1 and next(iter(props.values())).get("type") == "boolean":
        key = next(iter(props))
        return {key: await anyio.to_thread.run_sync(confirm, message)}

    def fields() -> dict[str, Any] | None:
        print(message, file=sys.stderr)
        out: dict[str, Any] = {}
        try:
            for key, spec in props.items():
                out[key] = input(f"{spec.get('title', key)}: ")
        except (EOFError, KeyboardInterrupt):
            return None
        return out

    return await anyio.to_thread.run_sync(fields)


def daemon_call(config: Any, daemon: dict[str, Any], tool: str, arguments: dict[str, Any]) -> Any:
    """One tool call on the daemon from a synchronous command; consent asked at the terminal."""
    import anyio

    from core.client import call_tool
    from core.terminal import interactive

    async def go() -> Any:
        return await call_tool(config, daemon, tool, arguments, ask=terminal_ask if interactive() else None)

    return anyio.run(go)


class LocalTarget:
    """Tool calls in this process, on a freshly started app."""

    remote = False

    def __init__(self, app: Any) -> None:
        self.app = app

    async def call(self, tool: str, arguments: dict[str, Any], *, on_progress: Any = None) -> ToolResult:
        from core.logging import get_logger
        from core.terminal import interactive
        from core.tools import ToolContext, ToolError

        ctx = ToolContext(surface="cli", caller="terminal", on_progress=on_progress,
                          elicit=terminal_ask if interactive() else None)
        try:
            return await self.app.call(tool, arguments, ctx=ctx)
        except ToolError:
            raise
        except Exception as exc:  # a plugin's bug: said in one line, as the daemon would; -v logs where
            get_logger("loom.cli").info("tool crashed", tool=tool, exc_info=True)
            raise ToolError(f"{tool} failed: {type(exc).__name__}: {exc}") from None

    async def list_tools(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "description": t.description, "input_schema": t.input_schema,
                 "annotations": t.annotations.to_mcp()} for t in self.app.tools.list()]

    def has(self, tool: str) -> bool:
        return tool in self.app.tools


class DaemonTarget:
    """Tool calls sent to the running daemon."""

    remote = True

    def __init__(self, session: Any, daemon: dict[str, Any]) -> None:
        self.session = session
        self.daemon = daemon

    async def call(self, tool: str, arguments: dict[str, Any], *, on_progress: Any = None) -> ToolResult:
        return await self.session.call(tool, arguments, on_progress=on_progress)

    async def list_tools(self) -> list[dict[str, Any]]:
        return await self.session.list_tools()

    def has(self, tool: str) -> bool:
        return True  # the daemon says so itself, with a suggestion, when it does not have it


@asynccontextmanager
async def connect(args: argparse.Namespace, *, start: bool = True,
                  needs: str | None = None) -> AsyncIterator[LocalTarget | DaemonTarget]:
    """The daemon when one runs (unless ``--local``), else an app in this process.

    ``start=False`` skips starting the local app's services (listing tools needs none);
    ``needs`` names the tool the command will call, so a local run with a mistyped name
    fails before any model is loaded (a pinned one loads when the app starts).
    """
    from core.client import DaemonSession, running_daemon
    from core.config import load_config
    from core.terminal import interactive

    config = load_config(getattr(args, "config", None))
    daemon = None if getattr(args, "local", False) else running_daemon(config.data_dir)
    if daemon is not None:
        async with DaemonSession(config, daemon, ask=terminal_ask if interactive() else None) as session:
            yield DaemonTarget(session, daemon)
        return
    if not getattr(args, "local", False):
        say(args, "no daemon is running (start one with `loom serve`); working in this process, "
                  "models load for this command only")
    from core.app import Loom

    app = Loom.create(config, configure_logs=False)
    if needs is not None:
        app.tools.get(needs)  # ToolNotFound, with the close names, before anything loads
    if not start:
        yield LocalTarget(app)
        return
    async with app:
        yield LocalTarget(app)
