"""Call any tool with JSON arguments and print its result; progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from . import make_app, print_json

HELP = "call a tool: loom call TOOL --json '{...}'"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tool", help="tool name, e.g. coder.generate")
    p.add_argument("--json", dest="arguments", default="{}", help="arguments as a JSON object")
    p.add_argument("--output", metavar="DIR", help="write image/audio results into DIR")


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.results import Audio, Image, ResourceLink, Text
    from core.tools import ToolContext, ToolError

    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        print(f"loom: --json is not valid JSON: {exc}", file=sys.stderr)
        return 2
    app = make_app(args)

    tty = sys.stderr.isatty()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        # One status line, redrawn in place on a terminal; one line per report otherwise.
        frac = f"{progress:g}/{total:g}" if total else f"{progress:g}"
        text = " ".join((message or "").split())  # streamed fragments may hold newlines
        line = f"[{args.tool}] {frac} {text}"
        if tty:
            width = shutil.get_terminal_size().columns - 1
            print(f"\r{line[:width].ljust(width)}", end="", file=sys.stderr, flush=True)
        else:
            print(line[:200], file=sys.stderr, flush=True)

    async def main() -> int:
        async with app:
            try:
                result = await app.call(args.tool, arguments, ctx=ToolContext(surface="cli", on_progress=on_progress))
            except ToolError as exc:
                print(f"\nloom: {exc}", file=sys.stderr)
                return 1
        if tty:
            print(file=sys.stderr)  # end the status line
        if result.structured is not None:
            print_json(result.structured)
        for i, item in enumerate(result.content):
            if isinstance(item, Text) and result.structured is None:
                print(item.text)
            elif isinstance(item, Image | Audio):
                ext = item.mime_type.split("/")[-1]
                if args.output:
                    path = f"{args.output}/{args.tool}-{i}.{ext}"
                    with open(path, "wb") as f:
                        f.write(item.data)
                    print(f"wrote {path}")
                else:
                    print(f"<{item.mime_type}, {len(item.data)} bytes; use --output DIR to save>")
            elif isinstance(item, ResourceLink):
                print(f"{item.name}: {item.uri}")
        return 1 if result.is_error else 0

    return anyio.run(main)
