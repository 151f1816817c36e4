"""Show the plan Loom would run for a request, as JSON, without running it, and why:
which model decided, each clause's context, confidence and runner-ups, and whether the
coordinator LLM was (or would be) asked. Asks the running daemon's router when there is
one (its embedder is warm)."""

from __future__ import annotations

import argparse
import json
import sys

from . import absolute, add_local_argument, add_request_arguments, connect, request_text

HELP = "print the plan for a request as JSON: loom route TEXT [--attach PATH ...]"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_request_arguments(p, text_help="the request (may be empty when a file is attached)")
    p.add_argument("--llm", action="store_true", help="let the coordinator LLM decide on low confidence")
    p.add_argument("--steps", action="store_true",
                   help="also print each step's arguments and model, and the expected cost in seconds "
                        "(-v does too)")
    add_local_argument(p)


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.tools import ToolError

    text = request_text(args)

    async def main() -> int:
        async with connect(args) as target:
            if not target.remote and not target.has("assistant.route"):
                print("loom: the assistant plugin is not enabled", file=sys.stderr)
                return 1
            try:
                result = await target.call("assistant.route", {"text": text, "attachments": absolute(args.attach),
                                                               "use_llm": args.llm})
            except ToolError as exc:
                print(f"loom: {exc}", file=sys.stderr)
                return 1
        if not isinstance(result.structured, dict):
            print(f"loom: {result.text()}", file=sys.stderr)
            return 1
        out = dict(result.structured)
        if not (args.steps or args.verbose):  # the decision and why stay; arguments and costs are detail
            for key in ("cost_s", "plan", "args"):
                out.pop(key, None)
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0

    return anyio.run(main)
