"""The assistant: routes each request into a plan of tool steps, runs it around the
cognition stages, and answers (``assistant.ask``, ``assistant.chat``, ``assistant.route``).

The router, the plan executor and the ``Turn`` that cognition stages receive live in
the modules beside this one; they are imported when first used, so ``loom tools`` stays
fast.
"""

from __future__ import annotations

import weakref
from typing import Annotated, Any

import msgspec

from core.events import new_id
from core.hookspecs import hookimpl
from core.tools import ToolContext, ToolError

Text = Annotated[str, msgspec.Meta(max_length=32_000, description="the request, in any language")]
Paths = Annotated[list[str], msgspec.Meta(max_length=16, description="files sent with the request (images, "
                                                                      "video, audio, documents), inside the "
                                                                      "allowed roots; their type is read from "
                                                                      "their content")]
Session = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[\w.:@-]+$",
                                      description="conversation id, for memory and continuity")]


class Message(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    role: Annotated[str, msgspec.Meta(pattern=r"^(user|assistant|system|tool)$")]
    content: Annotated[str, msgspec.Meta(max_length=200_000)] | None = None


class AskArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Text = ""
    attachments: Paths = []
    session_id: Session = "default"
    conversation: Annotated[str, msgspec.Meta(
        min_length=1, max_length=200, pattern=r"^[\w.:@-]+$",
        description="continue this conversation (any id you choose): the assistant remembers its earlier "
                    "turns, summarising the oldest. Over MCP the session is the conversation when omitted")] \
        | None = None
    history: Annotated[list[Message], msgspec.Meta(
        max_length=2000, description="earlier turns you keep yourself, oldest first ({role, content}); "
                                     "instead of conversation")] = []


class RouteArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Text = ""
    attachments: Paths = []
    use_llm: Annotated[bool, msgspec.Meta(description="ask the coordinator LLM when the router is unsure")] = False


class ChatArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=32_000, description="the message")]
    system: Annotated[str, msgspec.Meta(max_length=8000, description="system prompt override")] | None = None
    session_id: Session = "default"
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=8192)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None


def get_assistant(app: Any) -> Any:
    svc = app.services.get("assistant")
    if svc is None:
        from core.config import ConfigError

        from .service import Assistant, AssistantSettings

        try:
            settings = app.config.plugin_settings("assistant", AssistantSettings)
        except ConfigError as exc:
            raise ToolError(str(exc)) from None
        svc = app.services["assistant"] = Assistant(app, settings)
        app.services["router"] = svc.router
    return svc


async def ask(args: AskArgs, ctx: ToolContext) -> dict:
    """Ask Loom anything, with optional files: it routes the request to the right specialists
    (vision, coder, image generator, voice, browser, PC control, memory), runs the plan and answers."""
    if args.conversation and args.history:
        raise ToolError("give either conversation (the assistant keeps the history) or history (you keep it), "
                        "not both")
    history = [{"role": m.role, "content": m.content or ""} for m in args.history]
    turn = await get_assistant(ctx.app).ask(args.text, list(args.attachments), session_id=args.session_id,
                                            conversation=args.conversation or _session_conversation(ctx, history),
                                            history=history, ctx=ctx)
    plan = turn.plan
    files = [p for p in (_file(ctx.app, r) for r in turn.step_results.values()) if p]
    files += [p for p in turn.metadata.get("audio", []) if p not in files]
    return {
        "answer": turn.answer,
        "intent": plan.intent if plan else None,
        "steps": plan.tool_names() if plan else [],
        "reason": plan.reason if plan else "",
        "confidence": plan.confidence if plan else None,
        "files": files,
        "uncertain": turn.uncertain,
        "answer_confidence": turn.confidence,
        "session_id": turn.session_id,
        "plan_id": plan.id if plan else None,
        "skipped": turn.metadata.get("skipped", []),
        "conversation": turn.conversation_id,
        "summarized": bool(turn.summary),
        "documents": turn.documents,
    }


_mcp_conversations: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _session_conversation(ctx: ToolContext, history: list[dict[str, str]]) -> str | None:
    """Over MCP without an explicit conversation or history, the client's session is the conversation."""
    call = ctx.extra.get("mcp")
    if call is None or history:
        return None
    session = call.session
    key = getattr(session, "_connection", None) or session
    try:
        cid = _mcp_conversations.get(key)
        if cid is None:
            cid = _mcp_conversations[key] = f"mcp-{new_id()}"
    except TypeError:  # not weakly referenceable: no implicit conversation
        return None
    return cid


def _file(app: Any, result: Any) -> str | None:
    from .plan import result_file

    return result_file(result, app.config.data_dir / "tmp" / "plans")


async def route(args: RouteArgs, ctx: ToolContext) -> dict:
    """Show the plan Loom would run for a request, without running it: intent, tool steps, reason, confidence,
    and for each clause the model's choice, its confidence and the runner-ups."""
    svc = get_assistant(ctx.app)
    atts = svc.attachments(list(args.attachments))
    plan, _ = await svc.route(args.text, atts, use_llm=args.use_llm, transcribe=False, ctx=ctx)
    out = plan.summary()
    if svc.router.ready:  # how the router got its model: trained now, or loaded from the cache
        out["model_source"] = svc.router.model().source
    out["cost_s"] = plan.cost_s()
    out["plan"] = msgspec.to_builtins(plan.steps)
    threshold = svc.settings.llm_threshold
    if plan.decided_by == "llm":
        out["fallback"] = f"used: confidence {plan.confidence:.2f} < {threshold:.2f}"
    elif plan.decided_by != "model":
        out["fallback"] = f"not applicable: decided by {plan.decided_by}"
    elif plan.confidence < threshold:
        out["fallback"] = (f"would be used: confidence {plan.confidence:.2f} < {threshold:.2f} "
                           f"({'but the coordinator LLM was unavailable' if args.use_llm else 'ask with --llm'})")
    else:
        out["fallback"] = f"not needed: confidence {plan.confidence:.2f} >= {threshold:.2f}"
    return out


async def chat(args: ChatArgs, ctx: ToolContext) -> dict:
    """Answer directly with the coordinator model (no tools): questions, advice, writing, translation."""
    from core.results import Text as TextContent
    from core.results import ToolResult

    turn = ctx.extra.get("turn")
    out = await get_assistant(ctx.app).chat(args.text, system=args.system, turn=turn, max_tokens=args.max_tokens,
                                      temperature=args.temperature, ctx=ctx)
    return ToolResult([TextContent(out["answer"])], structured=out)


@hookimpl
def loom_startup(app: Any) -> None:
    # A daemon (it holds the data dir: `loom serve`) trains or loads the router's model in
    # the background from its start, so it answers at once and the first request does not
    # pay for training. One-shot commands (`loom route`, `loom call`) load it on first use.
    from core import datadir
    from core.logging import get_logger

    if not datadir.held(app.config.data_dir):
        return
    try:
        svc = get_assistant(app)
    except ToolError as exc:  # a bad [plugin.assistant] section: the tools say so when called
        get_logger("assistant").warning("router not warmed", error=str(exc))
        return
    svc.warming()
    app.spawn(svc.warm, name="assistant.router")


@hookimpl
def loom_register_tools(register):
    register(ask, open_world=True)
    register(chat, read_only=True)
    register(route, read_only=True, idempotent=True)
