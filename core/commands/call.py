"""Call any tool and print its result: text as text, code as code, media as saved files.

  loom call coder.generate task="a python function that adds two numbers"
  loom call imagegen.generate '{"prompt": "a lighthouse"}' --output lighthouse.png
  loom call admin.plugins --json           (the exact result object, for programs)

Arguments: a JSON object, ``key=value`` pairs (values read as JSON when they parse, as
text otherwise), or both. ``--json '{...}'`` (a JSON object right after ``--json``) is
the older way to pass arguments and still works. Goes to the running daemon when there
is one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import add_local_argument, connect

HELP = "call a tool: loom call TOOL [key=value ...] ['{...}'] [--json]"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("tool", help="tool name, e.g. coder.generate")
    p.add_argument("arguments", nargs="*", metavar="ARG", help="a JSON object and/or key=value pairs")
    p.add_argument("--args", dest="args_json", metavar="JSON", help="arguments as a JSON object")
    p.add_argument("--json", nargs="?", const=True, default=False, metavar="'{...}'",
                   help="print the exact result object as JSON (followed by a JSON object: the arguments)")
    p.add_argument("--output", metavar="FILE|DIR",
                   help="where media results go (default: the current directory, named from the request; "
                        "an existing file is never overwritten)")
    add_local_argument(p)


def parse_arguments(items: list[str], args_json: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in ([args_json] if args_json else []) + items:
        if item.lstrip().startswith("{"):
            try:
                value = json.loads(item)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{item[:60]!r} is not valid JSON: {exc}") from None
            out.update(value)
        elif "=" in item:
            key, _, raw = item.partition("=")
            try:
                out[key] = json.loads(raw)
            except json.JSONDecodeError:
                out[key] = raw
        else:
            raise ValueError(f"{item!r}: write arguments as key=value or as a JSON object")
    return out


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.tools import ToolError

    from .render import print_result
    from .stream import TextStream

    if isinstance(args.json, str):  # `--json '{...}'`: arguments, the older spelling
        if args.json.lstrip().startswith("{"):
            args.args_json = args.args_json or args.json
            args.json = False
        else:
            args.arguments.insert(0, args.json)
            args.json = True
    try:
        arguments = parse_arguments(args.arguments, args.args_json)
    except ValueError as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 2
    # A tool's streamed text is shown on the status line; the whole result prints at the end.
    stream = TextStream(args.tool, quiet=args.quiet, live=False)

    def failed(exc: Exception) -> int:
        stream.status.clear()
        print(f"loom: {exc}", file=sys.stderr)
        if "consent" in str(exc) and not sys.stdin.isatty():
            print("loom: run it at an interactive terminal to be asked y/N", file=sys.stderr)
        return 1

    async def main() -> int:
        try:
            async with connect(args, needs=args.tool) as target:
                try:  # caught inside: the MCP client's task group would wrap it in a group
                    result = await target.call(args.tool, arguments, on_progress=stream.on_progress)
                except ToolError as exc:
                    return failed(exc)
        except ToolError as exc:  # a mistyped tool, found before anything started
            return failed(exc)
        stream.status.clear()
        return print_result(result, args, tool=args.tool, arguments=arguments)

    return anyio.run(main)
