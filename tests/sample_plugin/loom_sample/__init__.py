"""A sample third-party Loom plugin, installed by the tests like any `loom-*` package.

It registers a tool (with example requests, so the assistant routes to it), a subscriber, a resource and a prompt, exactly as a plugin author
would, and nothing else.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

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
