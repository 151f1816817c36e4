"""List every registered tool with a summary of its arguments."""

from __future__ import annotations

import argparse

from . import make_app, print_json

HELP = "list every registered tool and its arguments"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="full schemas as JSON")


def run(args: argparse.Namespace) -> int:
    app = make_app(args)
    tools = app.tools.list()
    if args.json:
        print_json([{"name": t.name, "description": t.description, "input_schema": t.input_schema,
                     "annotations": t.annotations.to_mcp()} for t in tools])
        return 0
    for t in tools:
        flags = [k for k, v in (("read-only", t.annotations.read_only), ("destructive", t.annotations.destructive))
                 if v]
        first_line = (t.description.splitlines() or [""])[0]
        print(f"{t.summary()}{'  [' + ', '.join(flags) + ']' if flags else ''}")
        if first_line:
            print(f"    {first_line}")
    print(f"{len(tools)} tools")
    return 0
