"""The LLM fallback: when rules and embeddings are unsure, the coordinator picks the
intent by calling one of ten routing "tools" (a grammar makes even a small model emit a
well-formed call). Only the intent comes from the model; the steps still come from the
rules for that intent, so a confused model cannot invent a tool."""

from __future__ import annotations

from typing import Any

from core.capabilities import Chat

from .router import TEXT_INTENTS

DESCRIPTIONS = {
    "chat": "answer a question, give advice, write prose or poems, translate",
    "code": "write, fix, refactor or explain program code",
    "imagegen": "create or draw a new picture",
    "videogen": "create a new video or animation",
    "speak": "say something out loud with a voice",
    "research": "search the web or open a web page for current information",
    "pc_control": "operate the computer: open apps, click, type, press keys, screenshots",
    "memory": "remember, recall or forget facts about the user",
}


async def choose_intent(app: Any, text: str, plan: Any) -> tuple[str | None, str]:
    tools = [{"name": f"route_{i}", "description": DESCRIPTIONS[i], "parameters": {"type": "object",
              "properties": {}}} for i in TEXT_INTENTS]
    messages = [
        {"role": "system", "content": "You route user requests. Call exactly one routing tool."},
        {"role": "user", "content": text},
    ]
    name = app.pool.model_for("coordinator")
    async with app.pool.use(name, Chat, reason="routing fallback") as chat:
        result = await chat.complete(messages, tools=tools, tool_choice="required", max_tokens=48, temperature=0.0)
    if not result.tool_calls:
        return None, f"{name} made no call"
    called = result.tool_calls[0].name.removeprefix("route_")
    return (called if called in TEXT_INTENTS else None), f"{name} called route_{called}"
