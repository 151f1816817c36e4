"""List every tool (the running daemon's when there is one) with a summary of its arguments."""

from __future__ import annotations

import argparse
from typing import Any

from . import add_local_argument, connect, print_json

HELP = "list every registered tool and its arguments"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="full schemas as JSON")
    add_local_argument(p)


def summary(tool: dict[str, Any]) -> str:
    from core.tools import _type_name

    schema = tool["input_schema"] or {}
    required = set(schema.get("required", []))
    parts = [f"{k}{'' if k in required else '?'}: {_type_name(v)}" for k, v in schema.get("properties", {}).items()]
    return f"{tool['name']}({', '.join(parts)})"


def run(args: argparse.Namespace) -> int:
    import anyio

    async def main() -> list[dict[str, Any]]:
        async with connect(args, start=False) as target:
            return await target.list_tools()

    tools = anyio.run(main)
    if args.json:
        print_json(tools)
        return 0
    for t in tools:
        ann = t["annotations"]
        flags = [k for k, v in (("read-only", ann.get("readOnlyHint")), ("destructive", ann.get("destructiveHint")))
                 if v]
        first_line = (t["description"].splitlines() or [""])[0]
        print(f"{summary(t)}{'  [' + ', '.join(flags) + ']' if flags else ''}")
        if first_line:
            print(f"    {first_line}")
    print(f"{len(tools)} tools")
    return 0
