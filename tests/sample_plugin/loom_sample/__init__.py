"""A sample third-party Loom plugin, installed by the tests like any `loom-*` package.

It registers tools (``sample.reverse`` with example requests, so the assistant routes
such requests to it), a subscriber, a resource and a prompt, exactly as a plugin author
would, and nothing else. ``sample.tagline`` chats with whatever model serves the
``coordinator`` role through the public capability API (``core.capabilities.Chat``): it
never imports another plugin and never sees a raw model object.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from core.capabilities import Chat
from core.events import ToolFinished
from core.hookspecs import hookimpl
from core.tools import ToolContext

SEEN: list[str] = []  # tools whose calls the subscriber saw finish


class ReverseArgs(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(description="The text to reverse.", max_length=10_000)]
    times: Annotated[int, msgspec.Meta(ge=1, le=3)] = 1


async def reverse(args: ReverseArgs, ctx: ToolContext) -> str:
    """Reverse a piece of text (a no-op when reversed an even number of times)."""
    out = args.text
    for i in range(args.times):
        out = out[::-1]
        await ctx.progress(i + 1, args.times)
    return out


class TaglineArgs(msgspec.Struct, forbid_unknown_fields=True):
    product: Annotated[str, msgspec.Meta(description="What the tagline is for.", min_length=1, max_length=200)]


async def tagline(args: TaglineArgs, ctx: ToolContext) -> dict:
    """Write a one-line tagline for a product with the coordinator model."""
    pool = ctx.app.pool
    async with pool.use(pool.model_for("coordinator"), Chat) as chat:
        result = await chat.complete(
            [{"role": "system", "content": "You write short product taglines."},
             {"role": "user", "content": f"A tagline for: {args.product}"}],
            max_tokens=24, temperature=0.0, cancel=ctx.cancelled)
    return {"tagline": result.text.strip(), "model": chat.model, "tokens": result.usage.completion_tokens}


def on_finished(event: ToolFinished) -> None:
    SEEN.append(event.tool)


@hookimpl
def loom_register_tools(register):
    # The examples teach the assistant's router: "write 'loom' backwards" now routes here.
    register(reverse, read_only=True, idempotent=True, examples=[
        "reverse the text 'hello world'", "write 'stressed' backwards", "spell 'racecar' in reverse",
        "flip this string around: abc123", "can you reverse 'good morning'", "reverse these letters: xyz",
        "invierte el texto 'hola mundo'", "escribe 'amor' al revés", "dale la vuelta a esta palabra: casa",
        "écris 'bonjour' à l'envers", "schreib 'Hallo' rückwärts", "scrivi 'ciao' al contrario",
        "backwards please: level up", "mirror the characters of 'abc'"])
    register(tagline, read_only=True)


@hookimpl
def loom_register_subscribers(register):
    register(ToolFinished, on_finished, name="sample.on_finished", overflow="drop_oldest", maxsize=100)


@hookimpl
def loom_register_resources(register):
    register("sample://seen", lambda app: SEEN, name="seen", description="Tools the sample saw finish.")


@hookimpl
def loom_register_prompts(register):
    def shout(text: str) -> str:
        """Ask for the text in capitals."""
        return f"Repeat this in capital letters: {text}"

    register(shout)
