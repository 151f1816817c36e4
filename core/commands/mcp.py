"""Serve MCP over stdio for desktop clients (Claude Desktop, Cursor, ...).

stdout carries only JSON-RPC: from the first line of this command, anything else
that writes to stdout (a plugin's print, a library's banner) lands on stderr.

SIGTERM/SIGINT drain: new tool calls are refused (a JSON-RPC error saying Loom is shutting
down), the calls already running finish and their results are written (at most
``server.shutdown_grace`` seconds), then the plugins close and the process exits 0. A
second signal stops at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from . import make_app

HELP = "serve MCP over stdio (for desktop clients)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", help="serve only this tool profile (all, media, coding, discover, or one from "
                                     "[profiles.<name>] in loom.toml)")


def _claim_stdio() -> tuple[int, int]:
    """Keep private copies of fd 0/1 for the wire; point fd 0 at /dev/null and fd 1 at stderr."""
    wire_in = os.dup(0)
    wire_out = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return wire_in, wire_out


def run(args: argparse.Namespace) -> int:
    wire_in, wire_out = _claim_stdio()
    import anyio

    from core.profiles import ProfileNotFound
    from core.surfaces.mcp import McpSurface, serve_stdio

    app = make_app(args)
    try:
        surface = McpSurface(app, profile=getattr(args, "profile", None))
    except ProfileNotFound as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 2
    stdin = os.fdopen(wire_in, "rb", buffering=1 << 16)
    stdout = os.fdopen(wire_out, "wb", buffering=0)

    async def main() -> None:
        async with app, surface.running(), anyio.create_task_group() as tg:
            tg.start_soon(_drain_on_signal, surface, tg.cancel_scope)
            await serve_stdio(surface, stdin, stdout, max_line=app.config.server.max_body_bytes,
                              grace=app.config.server.shutdown_grace)
            tg.cancel_scope.cancel()

    anyio.run(main)
    if surface.draining.is_set():
        # The stdin reader thread may still be blocked on a client that keeps the pipe open:
        # everything is closed and written, so leave without waiting for it.
        sys.stderr.flush()
        os._exit(0)
    return 0


async def _drain_on_signal(surface: Any, scope: Any) -> None:
    """The first SIGTERM/SIGINT drains the surface (``serve_stdio`` then returns); a second stops now."""
    import anyio

    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            if surface.draining.is_set():
                scope.cancel()
                return
            print("loom: shutting down: finishing the tool calls in flight", file=sys.stderr, flush=True)
            surface.begin_drain()
