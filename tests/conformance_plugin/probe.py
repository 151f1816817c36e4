"""Test-only Loom plugin ``probe``: tools that exercise the MCP surface's behaviour.

Used in-process (``make_app(extra={"probe": probe})``) and in ``loom mcp`` / ``loom
serve`` subprocesses (through ``entrypoint.write_dist_info``). ``gate`` lets a test hold
a tool open and release it; ``noisy`` prints to stdout to prove stdio stays clean.
"""

from __future__ import annotations

import threading
import time

import anyio
import msgspec

from core.hookspecs import hookimpl
from core.results import Image, ResourceLink, Text, ToolResult
from core.tools import NoArgs, ToolContext, ToolError

print("probe plugin imported (this line must not reach the JSON-RPC stdout)")

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005050200" "5fc8f1d20000000049454e44ae426082")

# In-process tests observe these; subprocess tests observe tool results instead.
state: dict[str, object] = {"cancelled": threading.Event(), "started": threading.Event()}


class EchoArgs(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    times: int = 1


async def echo(args: EchoArgs) -> str:
    """Repeat the text."""
    return " ".join([args.text] * args.times)


async def numbers(args: NoArgs) -> list[int]:
    """Structured content that is not an object (wrapped by the MCP surface)."""
    return [1, 2, 3]


async def picture(args: NoArgs, ctx: ToolContext) -> ToolResult:
    """Text, an image and a link to a produced file."""
    return ToolResult([Text("a picture"), Image(PNG, "image/png"),
                       ResourceLink(uri="file:///tmp/loom-probe.png", name="loom-probe.png", mime_type="image/png")],
                      structured={"width": 1, "height": 1})


async def fail(args: NoArgs) -> str:
    """Always fails with a message for the caller."""
    raise ToolError("probe.fail failed on purpose: pass nothing and expect this")


class StepsArgs(msgspec.Struct):
    steps: int = 3


async def steps(args: StepsArgs, ctx: ToolContext) -> str:
    """Reports progress once per step."""
    for i in range(1, args.steps + 1):
        await ctx.progress(i, args.steps, f"step {i}")
        await anyio.sleep(0.001)
    return f"{args.steps} steps"


class WaitArgs(msgspec.Struct):
    seconds: float = 30.0


async def wait(args: WaitArgs) -> str:
    """Sleeps (cancellable); records cancellation in ``state`` for in-process tests."""
    started = state["started"]
    assert isinstance(started, threading.Event)
    started.set()
    try:
        await anyio.sleep(args.seconds)
    except anyio.get_cancelled_exc_class():
        cancelled = state["cancelled"]
        assert isinstance(cancelled, threading.Event)
        cancelled.set()
        raise
    return "waited"


def spin(args: WaitArgs, ctx: ToolContext) -> str:
    """A sync tool in a worker thread that stops when the call is cancelled."""
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        ctx.progress_sync(0.5, 1.0, "spinning")
        time.sleep(0.02)
    return "spun"


async def noisy(args: NoArgs) -> str:
    """Prints to stdout (must end up on stderr under `loom mcp`)."""
    print("noisy tool output on stdout")
    return "quiet result"


async def ask(args: NoArgs, ctx: ToolContext) -> str:
    """Asks the user twice through ctx.elicit."""
    if ctx.elicit is None:
        return "cannot ask"
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    first = await ctx.elicit("Your first name?", schema)
    second = await ctx.elicit("Your last name?", schema)
    if first is None or second is None:
        return "declined"
    return f"{first['name']} {second['name']}"


class Size(msgspec.Struct):
    width: int
    height: int
    unit: str = "px"


async def measure(args: NoArgs) -> Size:
    """Typed structured content: its output schema comes from the return annotation."""
    return Size(640, 480)


class RenderArgs(msgspec.Struct):
    steps: int = 5
    delay: float = 0.05


async def render(args: RenderArgs, ctx: ToolContext) -> dict:
    """A long job: progress every step, cancellable between steps (stands in for a video)."""
    for i in range(1, args.steps + 1):
        try:
            await anyio.sleep(args.delay)
        except anyio.get_cancelled_exc_class():
            cancelled = state["cancelled"]
            assert isinstance(cancelled, threading.Event)
            cancelled.set()
            raise
        await ctx.progress(i, args.steps, f"frame {i}")
    return {"frames": args.steps, "path": "/tmp/loom-probe.mp4"}


def bump(args: NoArgs) -> int:
    """Changes probe://counter (a resource clients can subscribe to)."""
    counter["value"] += 1
    return counter["value"]


counter = {"value": 0}


@hookimpl
def loom_register_resources(register):
    register("probe://counter", lambda app: {"value": counter["value"]}, name="counter",
             description="Changes when probe.bump is called.")
    register("probe://fixed", lambda app: "never changes", name="fixed", mime_type="text/plain")


@hookimpl
def loom_register_tools(register):
    register(measure, read_only=True)
    register(render)
    register(bump)
    register(echo, read_only=True, idempotent=True, title="Echo")
    register(numbers, read_only=True)
    register(picture, read_only=True)
    register(fail)
    register(steps)
    register(wait)
    register(spin)
    register(noisy)
    register(ask)  # not destructive: it shows ctx.elicit, not the policy's consent


@hookimpl
def loom_register_prompts(register):
    def greet(name: str, style: str = "plain") -> str:
        """Greet someone."""
        return f"Say hello to {name} in a {style} way."

    register(greet)
