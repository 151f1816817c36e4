"""A test plugin whose backend crashes on purpose: real llama.cpp chat that dies on a magic word.

Backend ``crashy`` is the llama.cpp backend with one difference: a chat request whose last
user message contains ``SEGFAULT`` reads address 0 through ctypes (a real SIGSEGV inside
the process that runs the model) and one containing ``ABORT`` calls ``os.abort()``. Each
writes a line to stderr first, so a crash report has last words to show. The tool
``crashy.chat`` chats with a named model through the public ``Chat`` capability, the way any
plugin would.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from core.capabilities import GENERATE, Chat
from core.hookspecs import hookimpl
from core.tools import ToolContext
from plugins.llamacpp.backend import LlamaCppBackend


class CrashyBackend(LlamaCppBackend):
    name = "crashy"
    default_placement = "process"

    def run(self, handle: Any, op: str, request: Any, emit: Callable[[Any], None], cancel: threading.Event) -> Any:
        if op == GENERATE:
            last = str(request.messages[-1].get("content", ""))
            if "SEGFAULT" in last:
                print("crashy: reading address 0 now", file=sys.stderr, flush=True)
                ctypes.string_at(0)
            if "ABORT" in last:
                print("crashy: calling abort()", file=sys.stderr, flush=True)
                os.abort()
        return super().run(handle, op, request, emit, cancel)


class ChatArgs(msgspec.Struct):
    model: str
    prompt: str
    max_tokens: int = 8


async def chat(args: ChatArgs, ctx: ToolContext) -> str:
    """Answer a prompt with the named model (greedy)."""
    async with ctx.app.pool.use(args.model, Chat) as model:
        result = await model.complete(args.prompt, max_tokens=args.max_tokens, temperature=0.0,
                                      cancel=ctx.cancelled)
    return result.text


@hookimpl
def loom_register_backends(register: Any) -> None:
    register("crashy", CrashyBackend)


@hookimpl
def loom_register_tools(register: Any) -> None:
    register(chat)
