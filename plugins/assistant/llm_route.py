"""The LLM fallback: when the router's model is unsure, the coordinator chooses the first
clause's tool, its answer constrained by a JSON schema built from the registry.

The schema admits only the tools that can run for this request (they exist, and their
required arguments can be filled), as an ``enum`` with each tool's description, so even a
small model cannot name a tool that is not there. The plan is then rebuilt around that
choice by the router (``Router.replan``), so its arguments validate like any other plan,
and it records ``decided_by="llm"`` and what the model said.
"""

from __future__ import annotations

import json
from typing import Any

from core.capabilities import Chat, ChatRequest

SYSTEM = ("You route a user's request to one tool. Answer with JSON only: {\"tool\": <one of the listed tools>, "
          "\"why\": <a few words>}.")


def schema_for(tools: list[str]) -> dict[str, Any]:
    """The JSON schema of an answer: one of ``tools`` and a short reason."""
    return {"type": "object", "properties": {"tool": {"type": "string", "enum": tools},
                                             "why": {"type": "string", "maxLength": 200}},
            "required": ["tool", "why"], "additionalProperties": False}


def prompt(text: str, tools: list[str], registry: Any) -> list[dict[str, Any]]:
    lines = []
    for name in tools:
        desc = registry.get(name).description.split("\n")[0] if name in registry else ""
        lines.append(f"- {name}: {desc}")
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Tools:\n" + "\n".join(lines) + f"\n\nRequest: {text}"}]


async def choose_tool(app: Any, router: Any, plan: Any, text: str, attachments: list[Any],
                      transcript: str | None) -> Any:
    tools = router.candidates(plan)
    if len(tools) < 2:
        plan.reason += "; low confidence, but only one tool can run"
        return plan
    try:
        name = app.pool.model_for("coordinator")
        request = ChatRequest(messages=prompt(transcript or text, tools, app.tools), max_tokens=64, temperature=0.0,
                              response_format={"type": "json_schema",
                                               "json_schema": {"name": "route", "schema": schema_for(tools)}})
        async with app.pool.use(name, Chat, reason="routing fallback") as chat:
            result = await chat.complete(request)
        answer = json.loads(result.text)
        tool = answer["tool"]
    except Exception as exc:  # the fallback must never break routing: the model's plan stands
        plan.reason += f"; low confidence, LLM fallback unavailable ({type(exc).__name__}: {exc})"
        return plan
    if tool not in tools:  # a backend that ignored the schema
        plan.reason += f"; low confidence, the LLM answered {tool!r}, not a valid tool: ignored"
        return plan
    said = f"{name} chose {tool}: {str(answer.get('why', ''))[:200]}"
    new = router.replan(tool, text, attachments, transcript=transcript)
    new.decided_by = "llm"
    new.llm = said
    new.confidence = plan.confidence  # the model's confidence; the LLM gives none of its own
    new.reason = f"low confidence ({plan.confidence:.2f}), coordinator LLM decided: {said}; {new.reason}"
    return new
