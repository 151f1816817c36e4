"""Ask Loom: route the request, run the plan, print the answer (progress on stderr)."""

from __future__ import annotations

import argparse
import sys

from . import add_request_arguments, make_app

HELP = 'ask anything: loom ask "..." [--attach PATH ...]'


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_request_arguments(p, text_help="the request")
    p.add_argument("--session", default="cli", help="conversation id (memory and continuity)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.tools import ToolContext, ToolError

    app = make_app(args, configure_logs=False)
    if "assistant.ask" not in app.tools:
        print("loom: the assistant plugin is not enabled", file=sys.stderr)
        return 1

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    async def on_event(event) -> None:
        kind = type(event).__name__
        if kind == "PlanReady":
            say(f"[plan] {event.intent}: {' -> '.join(event.steps)} ({event.confidence:.2f}) - {event.reason}")
        elif kind == "Delegated":
            say(f"[{event.step}] {event.tool}: {event.reason}" + (f" [{event.model}]" if event.model else ""))
        elif kind == "StepFinished":
            say(f"[{event.step}] {event.tool} {'done' if event.ok else 'FAILED'} in {event.seconds:.1f}s"
                + (f": {event.error}" if event.error else ""))
        elif kind in ("ModelLoading", "ModelLoaded"):
            say(f"[model] {getattr(event, 'model', '')} {'loading' if kind == 'ModelLoading' else 'loaded'}")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        frac = f"{progress:g}/{total:g}" if total else f"{progress:g}"
        say(f"[progress] {frac} {message or ''}")

    async def main() -> int:
        from core.events import Event

        async with app:
            app.bus.subscribe(Event, on_event, plugin="cli", name="ask-progress")
            try:
                result = await app.call("assistant.ask", {"text": args.text, "attachments": args.attach,
                                                          "session_id": args.session},
                                        ctx=ToolContext(surface="cli", on_progress=on_progress))
            except ToolError as exc:
                print(f"loom: {exc}", file=sys.stderr)
                return 1
            await anyio.sleep(0.05)  # let the progress subscriber print the last events
        if args.json:
            from . import print_json

            print_json(result.structured)
        else:
            print(result.structured["answer"])
            for f in result.structured.get("files", []):
                print(f"file: {f}")
        return 0

    return anyio.run(main)
