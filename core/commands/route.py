"""Show the plan Loom would run for a request, as JSON, without running it, and why:
which model decided, each clause's context, confidence and runner-ups, and whether the
coordinator LLM was (or would be) asked."""

from __future__ import annotations

import argparse
import json
import sys

from . import add_request_arguments, make_app

HELP = "print the plan for a request as JSON: loom route TEXT [--attach PATH ...]"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_request_arguments(p, text_help="the request (may be empty when a file is attached)")
    p.add_argument("--llm", action="store_true", help="let the coordinator LLM decide on low confidence")
    p.add_argument("--verbose", "-v", action="store_true", help="also print steps' arguments, models and costs")


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.tools import ToolError

    app = make_app(args, configure_logs=False)
    if "assistant.route" not in app.tools:
        print("loom: the assistant plugin is not enabled", file=sys.stderr)
        return 1

    async def main() -> int:
        async with app:
            try:
                result = await app.call("assistant.route", {"text": args.text, "attachments": list(args.attach),
                                                            "use_llm": bool(args.llm)})
            except ToolError as exc:
                print(f"loom: {exc}", file=sys.stderr)
                return 1
        if result.is_error or not isinstance(result.structured, dict):
            print(f"loom: {result.text()}", file=sys.stderr)
            return 1
        out = dict(result.structured)
        if not args.verbose:  # the decision and why stay; arguments and costs are detail
            for key in ("cost_s", "plan", "args"):
                out.pop(key, None)
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0

    return anyio.run(main)
