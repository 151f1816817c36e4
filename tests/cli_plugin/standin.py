"""A stand-in for ``assistant.ask`` (plugin ``standin``), for the dashboard test, which is
about the chat panel's streaming plumbing, not a model."""

from __future__ import annotations

import msgspec

from core.hookspecs import hookimpl
from core.tools import ToolContext


class Ask(msgspec.Struct):
    text: str = ""
    session_id: str = "default"
    attachments: list[str] = []


async def stand_in_ask(args: Ask, ctx: ToolContext) -> dict:
    """A stand-in for assistant.ask, for dashboard tests that are about the streaming
    plumbing (SSE to the chat panel), not about a model: it streams its answer word by word
    the way the assistant does (progress without a total)."""
    import anyio

    words = ["You", " said:", f" {args.text}"]
    for w in words:
        await ctx.progress(1, None, w)
        await anyio.sleep(0.2)
    return {"answer": "".join(words), "files": []}


@hookimpl
def loom_register_tools(register):
    register(stand_in_ask, name="assistant.ask", open_world=True)
