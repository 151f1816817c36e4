"""Ask Loom: route the request, run the plan, print the answer as it is written.

Goes to the running daemon when there is one (its models are warm), else runs in this
process. ``echo "question" | loom ask`` reads the request from stdin.
"""

from __future__ import annotations

import argparse
import sys

from . import absolute, add_local_argument, add_request_arguments, connect, request_text

HELP = 'ask anything: loom ask "..." [--attach PATH ...]  (or: echo "..." | loom ask)'


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_request_arguments(p, text_help="the request")
    p.add_argument("--session", default="cli", help="conversation id (memory and continuity)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    add_local_argument(p)


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.tools import ToolError

    from .render import print_result
    from .stream import TextStream, describe_event

    text = request_text(args)
    if not text.strip() and not args.attach:
        print('loom: ask something: loom ask "your question" (or pipe it in: echo "..." | loom ask)',
              file=sys.stderr)
        return 2
    arguments = {"text": text, "attachments": absolute(args.attach), "session_id": args.session}
    stream = TextStream("ask", quiet=args.quiet, live=not args.json, assistant=True)

    async def main() -> int:
        async with connect(args) as target:
            if not target.remote:
                from core.events import Event

                if not target.has("assistant.ask"):
                    print("loom: the assistant plugin is not enabled", file=sys.stderr)
                    return 1

                async def on_event(event: object) -> None:
                    line = describe_event(event)
                    if line:
                        stream.note(line)

                target.app.bus.subscribe(Event, on_event, plugin="cli", name="ask-progress")
            try:
                result = await target.call("assistant.ask", arguments, on_progress=stream.on_progress)
            except ToolError as exc:
                stream.status.clear()
                print(f"\nloom: {exc}" if stream.printed else f"loom: {exc}", file=sys.stderr)
                return 1
        if args.json:
            return print_result(result, args, tool="assistant.ask", arguments=arguments)
        s = result.structured or {}
        stream.finish(s.get("answer") or result.text())
        for f in s.get("files", []):
            print(f"file: {f}")
        return 0

    return anyio.run(main)
