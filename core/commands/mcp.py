"""Serve MCP over stdio for desktop clients (Claude Desktop, Cursor, ...).

stdout carries only JSON-RPC: from the first line of this command, anything else
that writes to stdout (a plugin's print, a library's banner) lands on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

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
        async with app, surface.running():
            await serve_stdio(surface, stdin, stdout, max_line=app.config.server.max_body_bytes)

    anyio.run(main)
    return 0
