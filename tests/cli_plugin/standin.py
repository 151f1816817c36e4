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
    plumbing (SSE to the chat panel), not about a model: it reports the way the assistant
    does (docs/agents.md): a step line, then "answer: <the answer so far>" as it grows."""
    import anyio

    words = ["You", " said:", f" {args.text}"]
    n = 1
    await ctx.progress(n, None, "step 1 assistant.chat: started")
    for i in range(len(words)):
        n += 1
        await ctx.progress(n, None, "answer: " + "".join(words[:i + 1]))
        await anyio.sleep(0.2)
    await ctx.progress(n + 1, None, "step 1 assistant.chat: done in 0.60 s")
    return {"answer": "".join(words), "files": []}


@hookimpl
def loom_register_tools(register):
    register(stand_in_ask, name="assistant.ask", open_world=True)
