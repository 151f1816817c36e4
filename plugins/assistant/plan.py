"""Plans: a small DAG of tool steps with a reason and a confidence, and the executor.

A ``Step`` names a tool and carries *semantic* inputs (``text``, ``file``, ``url``,
``app``, ``keys``, ``x``, ``y``...) rather than the tool's own argument names: the
router does not need to know every plugin's schema, and a plugin may rename its
fields. At run time ``bind_args`` maps the semantic values onto the tool's JSON schema
(``prompt``/``task``/``question`` <- text, ``image``/``path``/``audio`` <- file...).

Inputs refer to earlier steps with ``{s1.text}`` / ``{s1.file}`` placeholders, and to
the request with ``{request}`` and ``{attachment0}``; a step runs after the steps it
refers to (and those in ``after``). Every step goes through ``app.call`` so the
authorization hook and the tool events apply, and is published as
``StepStarted``/``StepFinished``; the first failing step fails the plan with a
``PlanError`` naming it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from core.events import new_id
from core.tools import ToolContext, ToolError

from .events import PlanFinished, StepFinished, StepStarted


class Step(msgspec.Struct, kw_only=True):
    id: str
    tool: str
    args: dict[str, Any] = {}  # semantic name -> value or "{ref}" template
    after: list[str] = []
    role: str | None = None  # the model role the tool needs, for the cost model
    model: str | None = None  # the model chosen for it (passed when the tool takes ``model``)
    cost_s: float = 0.0  # expected seconds, including loading the model when not resident
    note: str = ""


class Plan(msgspec.Struct, kw_only=True):
    intent: str
    steps: list[Step]
    reason: str
    confidence: float
    input_type: str = "text"
    decided_by: str = "rules"
    id: str = msgspec.field(default_factory=new_id)
    #: after the first step (a transcription), route its text and append those steps
    then_route: bool = False
    seconds: float = 0.0  # time routing took, all in (transcribing while routing included)
    decide_s: float = 0.0  # time the router's own decision took (no LLM, no transcription)
    alternatives: list[str] = []  # the runner-up intents, best first
    model: str = ""  # the model that decided (empty for a structural rule or a plugin)
    #: per clause: its text, context, the chosen tool, confidence, the runnable
    #: alternatives with their probabilities and the tools that could not run
    decisions: list[dict[str, Any]] = []
    llm: str = ""  # what the coordinator LLM said, when it was asked

    def tool_names(self) -> list[str]:
        return [s.tool for s in self.steps]

    def summary(self) -> dict[str, Any]:
        """What ``loom route`` prints."""
        return {"intent": self.intent, "steps": self.tool_names(), "reason": self.reason,
                "confidence": round(self.confidence, 3), "decided_by": self.decided_by, "model": self.model,
                "clauses": self.decisions, "args": [{"id": s.id, "tool": s.tool, "args": s.args} for s in self.steps],
                **({"llm": self.llm} if self.llm else {})}

    def cost_s(self) -> float:
        return round(sum(s.cost_s for s in self.steps), 2)


class PlanError(ToolError):
    """A step failed; the message names the step and its tool."""

    def __init__(self, message: str, step: Step | None = None) -> None:
        super().__init__(message)
        self.step = step


# --- binding semantic inputs onto a tool's schema -------------------------------------

#: tool field name -> the semantic value it takes
FIELD_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("text", "prompt", "task", "question", "query", "instruction", "instructions", "message",
                     "content", "input", "request", "topic", "description", "goal"), "text"),
    **dict.fromkeys(("file", "path", "image", "image_path", "audio", "audio_path", "video", "video_path",
                     "source", "input_path", "filename"), "file"),
    **dict.fromkeys(("files", "images", "paths"), "files"), "code": "text",
    "url": "url", "app": "app", "name": "app", "application": "app", "command": "app", "keys": "keys", "hotkey": "keys",
    "combo": "keys", "x": "x", "y": "y", "model": "model", "session_id": "session_id", "language": "language",
    "button": "button", "clicks": "clicks", "session": "session_id", "target": "text",
    "direction": "direction",
}


def bind_args(schema: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a tool with ``schema`` from semantic ``values``; raises on a missing required one."""
    props: dict[str, Any] = schema.get("properties", {})
    out: dict[str, Any] = {}
    for field, prop in props.items():
        if field in values:
            value = values[field]
        else:
            sem = FIELD_SYNONYMS.get(field)
            if sem is None or sem not in values:
                if sem == "files" and "file" in values:
                    value = [values["file"]]
                else:
                    continue
            else:
                value = values[sem]
        if value is None:
            continue
        if _is_array(prop) and not isinstance(value, list):
            value = [value]
        elif not _is_array(prop) and isinstance(value, list):
            value = value[0] if value else None
            if value is None:
                continue
        out[field] = value
    missing = [r for r in schema.get("required", []) if r not in out]
    if missing:
        raise ToolError(f"it needs {', '.join(missing)}, which the request did not provide")
    return out


def _is_array(prop: dict[str, Any]) -> bool:
    t = prop.get("type")
    if t == "array" or (isinstance(t, list) and "array" in t):
        return True
    return any(p.get("type") == "array" for p in prop.get("anyOf", []))


# --- reading a step's output ---------------------------------------------------------


def result_text(result: Any) -> str:
    text = result.text() if hasattr(result, "text") else str(result)
    if not text and getattr(result, "structured", None) is not None:
        text = msgspec.json.encode(result.structured).decode()
    return text


def result_file(result: Any, scratch: Path) -> str | None:
    """A file the step produced: a resource link, inline image/audio (saved), or a ``path`` key."""
    from core.results import Audio, Image, ResourceLink

    for item in getattr(result, "content", []):
        if isinstance(item, ResourceLink) and item.uri.startswith("file://"):
            from urllib.parse import unquote, urlparse

            return unquote(urlparse(item.uri).path)
    for item in getattr(result, "content", []):
        if isinstance(item, Image | Audio):
            # Named by content: asking twice for the same result (the answer's "Saved:" line,
            # then the turn's file list) names one file instead of writing two copies.
            ext = item.mime_type.split("/")[-1].split(";")[0] or "bin"
            path = scratch / f"{hashlib.sha256(item.data).hexdigest()[:24]}.{ext}"
            if not path.is_file():
                scratch.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(suffix=f".{ext}", dir=scratch)
                with open(fd, "wb") as f:
                    f.write(item.data)
                os.replace(name, path)
            return str(path)
    structured = getattr(result, "structured", None)
    if isinstance(structured, dict):
        for key in ("path", "file", "image", "output", "audio", "video"):
            if isinstance(structured.get(key), str):
                return structured[key]
        for key in ("paths", "files", "images"):
            if isinstance(structured.get(key), list) and structured[key]:
                return str(structured[key][0])
    return None


_REF = re.compile(r"\{([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)\}")


def resolve(value: Any, ns: dict[str, Any]) -> Any:
    """Fill ``{name}`` references from ``ns``; a value that is one reference keeps its type."""
    if not isinstance(value, str) or "{" not in value:
        return value
    whole = _REF.fullmatch(value)
    if whole:
        if whole.group(1) not in ns:
            raise ToolError(f"it refers to {{{whole.group(1)}}}, which no earlier step produced")
        return ns[whole.group(1)]

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in ns:
            return m.group(0)
        v = ns[m.group(1)]
        return "" if v is None else str(v)

    return _REF.sub(sub, value)


def refs(step: Step) -> set[str]:
    """Step ids this step reads from (``{s1.text}`` -> ``s1``)."""
    out = set(step.after)
    for v in step.args.values():
        if isinstance(v, str):
            out.update(m.group(1).split(".")[0] for m in _REF.finditer(v) if "." in m.group(1))
    return out


def order(steps: list[Step]) -> list[Step]:
    """Topological order (stable); a cycle or a dangling reference is a ``PlanError``."""
    ids = {s.id for s in steps}
    done: set[str] = set()
    out: list[Step] = []
    pending = list(steps)
    while pending:
        ready = [s for s in pending if refs(s) <= done]
        if not ready:
            bad = pending[0]
            unknown = refs(bad) - ids
            why = f"refers to unknown steps {sorted(unknown)}" if unknown else "is part of a cycle"
            raise PlanError(f"plan is invalid: step {bad.id} ({bad.tool}) {why}", bad)
        for s in ready:
            out.append(s)
            done.add(s.id)
            pending.remove(s)
    return out


# --- running ------------------------------------------------------------------------

Reroute = Callable[[str], Awaitable["Plan"]]


async def execute(plan: Plan, app: Any, *, request: str = "", attachments: list[str] | None = None,
                  session_id: str = "default", ctx: ToolContext | None = None,
                  reroute: Reroute | None = None, extra: dict[str, Any] | None = None,
                  on_result: Callable[[Step, Any], Awaitable[None]] | None = None,
                  precomputed: dict[str, Any] | None = None,
                  on_step: Callable[[Any], Awaitable[None]] | None = None) -> dict[str, Any]:
    """Run ``plan``'s steps in dependency order; returns the namespace of outputs.

    The namespace has ``{id}.text`` / ``{id}.file`` per step and ``last.text`` /
    ``last.file`` for the final one. ``reroute(text)`` is used when ``plan.then_route``
    is set: the first step's text (a transcript) is routed and its steps appended.
    ``precomputed`` maps step ids to results already obtained (the router transcribed
    the audio while routing): those steps are not run twice. ``on_step`` also receives
    each ``StepStarted``/``StepFinished`` event (the assistant reports them as progress).
    """
    started = time.perf_counter()
    corr = ctx.correlation_id if ctx else None
    ns: dict[str, Any] = {"request": request, "session_id": session_id, **(extra or {})}
    for i, path in enumerate(attachments or []):
        ns[f"attachment{i}"] = path
    scratch = Path(app.config.data_dir) / "tmp" / "plans"
    failed: Step | None = None
    error: str | None = None
    try:
        queue = order(plan.steps)
        index = 0
        while index < len(queue):
            step = queue[index]
            index += 1
            await _run_step(plan, step, index, app, ns, scratch, ctx, corr, on_result,
                            (precomputed or {}).get(step.id), on_step)
            if plan.then_route and index == 1 and reroute is not None:
                more = await reroute(ns[f"{step.id}.text"])
                appended = _rebase(more.steps, step.id, len(plan.steps))
                plan.steps.extend(appended)
                plan.intent = more.intent
                plan.reason += f"; after transcription: {more.reason}"
                plan.then_route = False
                queue.extend(order(appended))
        return ns
    except PlanError as exc:
        failed, error = exc.step, str(exc)
        raise
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        await app.bus.publish(PlanFinished(
            plan_id=plan.id, ok=error is None, seconds=round(time.perf_counter() - started, 4),
            error=error, failed_step=failed.id if failed else None, correlation_id=corr, source="assistant"))


def _rebase(steps: list[Step], source_id: str, offset: int) -> list[Step]:
    """Renumber steps routed from a transcript so they follow the transcription step."""
    mapping = {s.id: f"s{offset + i + 1}" for i, s in enumerate(steps)}
    out = []
    for s in steps:
        args = {}
        for k, v in s.args.items():
            if isinstance(v, str):
                v = v.replace("{request}", f"{{{source_id}.text}}")
                for old, new in mapping.items():
                    v = v.replace(f"{{{old}.", f"{{{new}.")
            args[k] = v
        out.append(msgspec.structs.replace(s, id=mapping[s.id], args=args,
                                           after=[mapping.get(a, a) for a in s.after] or [source_id]))
    return out


async def _run_step(plan: Plan, step: Step, index: int, app: Any, ns: dict[str, Any], scratch: Path,
                    ctx: ToolContext | None, corr: str | None,
                    on_result: Callable[[Step, Any], Awaitable[None]] | None, done: Any = None,
                    on_step: Callable[[Any], Awaitable[None]] | None = None) -> None:
    label = f"step {index} ({step.tool})"
    started = StepStarted(plan_id=plan.id, step=step.id, tool=step.tool, index=index, correlation_id=corr,
                          source="assistant")
    await app.bus.publish(started)
    if on_step is not None:
        await on_step(started)
    t0 = time.perf_counter()
    try:
        if done is not None:
            result = done
        else:
            result = await _call(app, plan, step, ns, ctx)
    except ToolError as exc:
        await _finished(app, plan, step, index, t0, corr, str(exc), on_step)
        raise PlanError(f"{label} failed: {exc}", step) from exc
    except Exception as exc:
        await _finished(app, plan, step, index, t0, corr, repr(exc), on_step)
        raise PlanError(f"{label} failed unexpectedly: {exc!r}", step) from exc
    text = result_text(result)
    file = result_file(result, scratch)
    ns[f"{step.id}.text"] = ns["last.text"] = text
    ns[f"{step.id}.file"] = ns["last.file"] = file
    ns[f"{step.id}.result"] = ns["last.result"] = result
    if on_result is not None:
        await on_result(step, result)
    await _finished(app, plan, step, index, t0, corr, None, on_step)


async def _call(app: Any, plan: Plan, step: Step, ns: dict[str, Any], ctx: ToolContext | None) -> Any:
    try:
        tool = app.tools.get(step.tool)
    except ToolError as exc:
        raise ToolError(f"{exc} Enable the plugin that provides it, or configure its model.") from None
    values = {k: resolve(v, ns) for k, v in step.args.items()}
    values.setdefault("session_id", ns.get("session_id"))
    if step.model:
        values.setdefault("model", step.model)
    args = bind_args(tool.input_schema, values)
    extra = {**(ctx.extra if ctx else {}), "plan_id": plan.id, "step": step.id}
    if ctx is not None:
        sub = ToolContext(surface=ctx.surface, correlation_id=ctx.correlation_id, caller=ctx.caller,
                          on_progress=ctx.on_progress, elicit=ctx.elicit, cancelled=ctx.cancelled, extra=extra)
    else:
        sub = ToolContext(surface="plan", extra=extra)
    result = await app.call(step.tool, args, ctx=sub)
    if getattr(result, "is_error", False):
        raise ToolError(result_text(result) or "the tool reported an error")
    return result


async def _finished(app: Any, plan: Plan, step: Step, index: int, t0: float, corr: str | None,
                    error: str | None, on_step: Callable[[Any], Awaitable[None]] | None = None) -> None:
    event = StepFinished(plan_id=plan.id, step=step.id, tool=step.tool, index=index, ok=error is None,
                         seconds=round(time.perf_counter() - t0, 4), error=error, correlation_id=corr,
                         source="assistant")
    await app.bus.publish(event)
    if on_step is not None:
        await on_step(event)
