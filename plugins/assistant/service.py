"""The assistant service: route a request, run cognition stages around the answer, run
the plan, and answer. Registered as ``app.services["assistant"]`` (and ``"router"``).

Delegation: the coordinator answers what it can itself (``assistant.chat``), and hands
programming to ``coder.*``, pictures to ``imagegen.*``, speech to ``voice.*`` and so on;
each decision is published as a ``Delegated`` event with its reason.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgspec

from core.capabilities import Chat
from core.logging import get_logger
from core.paths import confine
from core.tools import ToolContext, ToolError

from . import costs
from .events import Delegated, PlanReady, StageFailed
from .plan import Plan, Step, bind_args, execute
from .router import LLM_THRESHOLD, Router, RouteRequest
from .sniff import detect
from .turn import Attachment, Turn

log = get_logger("loom.assistant")

SYSTEM = ("You are Loom, a helpful local assistant. Answer clearly and briefly. If you are not sure of a fact, "
          "say so instead of guessing.")

WHY = {
    "assistant.chat": "the coordinator answers this itself",
    "coder.": "programming is handed to the coding model",
    "imagegen.": "pictures are handed to the image generator",
    "video.": "video generation is handed to the video model",
    "vision.": "seeing is handed to the vision-language model",
    "voice.speak": "speech is handed to the text-to-speech voice",
    "voice.transcribe": "audio is handed to the speech-to-text model",
    "browser.": "web research is handed to the browser agent",
    "system.": "PC control is handed to the system tools",
    "memory.": "memory is kept by the memory store",
}


class AssistantSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    llm_fallback: bool = True  # ask the coordinator when the router's model is unsure
    llm_threshold: float = LLM_THRESHOLD
    max_attachments: int = 8
    max_tokens: int = 512
    temperature: float = 0.3
    system_prompt: str = SYSTEM


class Assistant:
    def __init__(self, app: Any, settings: AssistantSettings | None = None) -> None:
        self.app = app
        self.settings = settings or AssistantSettings()
        self.router = Router(app.tools, cache_dir=app.config.cache_dir / "router")

    # -- attachments --------------------------------------------------------------------

    def attachments(self, paths: list[str]) -> list[Attachment]:
        if len(paths) > self.settings.max_attachments:
            raise ToolError(f"at most {self.settings.max_attachments} attachments per request")
        roots = self.app.config.allowed_roots()
        out = []
        for p in paths:
            path = confine(p, roots, what="attachment")
            try:
                out.append(detect(path))
            except OSError as exc:  # missing, a directory, no permission, a name too long...
                raise ToolError(str(exc) if exc.filename is None else
                                f"cannot read attachment {p[:200]!r}: {exc.strerror or exc}") from None
        return out

    # -- routing ------------------------------------------------------------------------

    async def route(self, text: str, attachments: list[Attachment], *, session_id: str = "default",
                    use_llm: bool | None = None, transcribe: bool = True,
                    ctx: ToolContext | None = None) -> tuple[Plan, dict[str, Any]]:
        """The plan for a request, and results already computed while routing (a transcript)."""
        t0 = time.perf_counter()
        request = RouteRequest(text=text, attachments=[a.path for a in attachments],
                               kinds=[a.kind for a in attachments], session_id=session_id)
        chosen = self.app.plugin_route(request)
        if chosen is not None:
            plan = chosen if isinstance(chosen, Plan) else msgspec.convert(chosen, Plan)
            plan.decided_by = "plugin"
            return await self._ready(plan, t0, ctx), {}
        precomputed: dict[str, Any] = {}
        transcript = None
        kinds = [a.kind for a in attachments]
        if transcribe and "audio" in kinds and not text.strip() and "voice.transcribe" in self.app.tools:
            audio = next(a for a in attachments if a.kind == "audio")
            schema = self.app.tools.get("voice.transcribe").input_schema
            result = await self.app.call("voice.transcribe", bind_args(schema, {"file": audio.path}), ctx=_sub(ctx))
            transcript = result.text()
            precomputed["s1"] = result
        plan = await self.decide(text, attachments, transcript=transcript)
        llm = self.settings.llm_fallback if use_llm is None else use_llm
        if llm and plan.confidence < self.settings.llm_threshold and plan.decided_by == "model":
            plan = await self._llm_route(plan, text, attachments, transcript)
        return await self._ready(plan, t0, ctx), precomputed

    async def decide(self, text: str, attachments: list[Attachment], *, transcript: str | None = None) -> Plan:
        """The router's fast path (the learned model; no LLM). In a worker thread: the
        first call trains or loads the model, which must not stall the event loop."""
        return await anyio.to_thread.run_sync(
            lambda: self.router.decide(text, attachments, transcript=transcript))

    async def _ready(self, plan: Plan, t0: float, ctx: ToolContext | None) -> Plan:
        notes = costs.annotate(plan, self.app)
        if notes:
            plan.reason += "; " + "; ".join(notes)
        plan.seconds = time.perf_counter() - t0
        await self.app.bus.publish(PlanReady(
            plan_id=plan.id, intent=plan.intent, steps=plan.tool_names(), reason=plan.reason,
            confidence=plan.confidence, decided_by=plan.decided_by, seconds=round(plan.seconds, 5),
            correlation_id=ctx.correlation_id if ctx else None, source="assistant"))
        return plan

    async def _llm_route(self, plan: Plan, text: str, attachments: list[Attachment],
                         transcript: str | None) -> Plan:
        """Low confidence: the coordinator picks the first clause's tool among those that can
        run, its output constrained by a JSON schema; the plan says so."""
        from .llm_route import choose_tool

        return await choose_tool(self.app, self.router, plan, text, attachments, transcript)

    # -- answering ------------------------------------------------------------------------

    async def ask(self, text: str, attachment_paths: list[str], *, session_id: str = "default",
                  ctx: ToolContext | None = None) -> Turn:
        ctx = ctx or ToolContext(surface="python")
        atts = self.attachments(attachment_paths)
        if not text.strip() and not atts:
            raise ToolError("ask something: give a text, an attachment, or both")
        turn = Turn(text=text, session_id=session_id, attachments=atts, app=self.app,
                    correlation_id=ctx.correlation_id)
        turn._generate = lambda prompt, **kw: self.generate(prompt, **kw)
        plan, precomputed = await self.route(text, atts, session_id=session_id, ctx=ctx)
        turn.plan = plan
        if "s1" in precomputed:
            turn.metadata["transcript"] = precomputed["s1"].text()
        await self._delegations(turn, plan)
        stages = self._stages()
        for stage in stages:
            await self._stage(turn, stage, "before")
        if turn.answer is None:
            sub = ToolContext(surface=ctx.surface, correlation_id=ctx.correlation_id, caller=ctx.caller,
                              on_progress=ctx.on_progress, elicit=ctx.elicit, cancelled=ctx.cancelled,
                              extra={**ctx.extra, "turn": turn})

            async def reroute(transcript: str) -> Plan:
                turn.metadata["transcript"] = transcript
                more = await self.decide(transcript, [])
                costs.annotate(more, self.app)
                return more

            async def on_result(step: Step, result: Any) -> None:
                turn.step_results[step.id] = result
                if step.tool == "voice.transcribe":
                    turn.metadata["transcript"] = result.text()

            ns = await execute(plan, self.app, request=text, attachments=[a.path for a in atts],
                               session_id=session_id, ctx=sub, reroute=reroute, on_result=on_result,
                               precomputed=precomputed)
            turn.answer = _answer_text(plan, ns)
        for stage in reversed(stages):
            await self._stage(turn, stage, "after")
        if turn.uncertain and turn.answer and not turn.metadata.get("uncertainty_marked"):
            turn.answer = f"(I am not certain about this.) {turn.answer}"
        return turn

    async def _delegations(self, turn: Turn, plan: Plan) -> None:
        for step in plan.steps:
            why = next((w for prefix, w in WHY.items() if step.tool.startswith(prefix)), "a plugin's tool")
            direct = step.tool == "assistant.chat"
            model = step.model
            if model is None and step.role:
                try:
                    model = self.app.pool.model_for(step.role)
                except Exception:
                    model = None
            reason = why + (f"; {step.note}" if step.note else "")
            await turn.emit(Delegated(plan_id=plan.id, step=step.id, tool=step.tool, model=model, direct=direct,
                                      reason=reason, source="assistant"))

    def _stages(self) -> list[Any]:
        out = []
        for stage in self.app.stages:
            own = self.app.config.plugin.get(stage.name, {})
            if own.get("enabled", True) is False or getattr(stage.obj, "enabled", True) is False:
                continue
            out.append(stage)
        return out

    async def _stage(self, turn: Turn, stage: Any, phase: str) -> None:
        fn = getattr(stage.obj, phase, None)
        if fn is None:
            return
        try:
            await fn(turn)
        except Exception as exc:
            log.warning("cognition stage failed", stage=stage.name, phase=phase, error=repr(exc))
            await turn.emit(StageFailed(stage=stage.name, phase=phase, error=repr(exc), source="assistant"))

    # -- the coordinator ------------------------------------------------------------------

    async def generate(self, prompt: str | list[dict[str, Any]], *, system: str | None = None,
                       temperature: float | None = None, max_tokens: int | None = None,
                       seed: int | None = None, ctx: ToolContext | None = None, model: str | None = None) -> str:
        """One answer from the coordinator model (or ``model``: the reasoning stage's expert tier)."""
        name = model or self.app.pool.model_for("coordinator")
        messages = prompt if isinstance(prompt, list) else [
            {"role": "system", "content": system or self.settings.system_prompt},
            {"role": "user", "content": prompt}]
        async with self.app.pool.use(name, Chat, reason="assistant") as chat:
            result = await chat.complete(messages, max_tokens=max_tokens or self.settings.max_tokens,
                                         temperature=self.settings.temperature if temperature is None else temperature,
                                         seed=seed, cancel=ctx.cancelled if ctx else None)
        return result.text.strip()

    async def chat(self, text: str, *, system: str | None, turn: Turn | None, max_tokens: int | None,
                   temperature: float | None, ctx: ToolContext | None) -> dict[str, Any]:
        """Answer directly, shaped by the turn's stages (context, instructions, strategy, samples)."""
        sys_parts = [system or self.settings.system_prompt]
        user = text
        samples = 1
        model = None
        if turn is not None:
            sys_parts += turn.instructions
            if turn.context:
                sys_parts.append("What you know that may help:\n" + "\n".join(f"- {c}" for c in turn.context))
            if turn.strategy == "chain_of_thought":
                user += "\n\nThink it through step by step, then give the final answer on the last line."
            samples = max(1, min(turn.samples, 8))
            model = (turn.metadata.get("reasoning") or {}).get("model")  # the tier the reasoning stage chose
        messages = [{"role": "system", "content": "\n\n".join(sys_parts)}, {"role": "user", "content": user}]
        answers = []
        for i in range(samples):
            temp = temperature if temperature is not None else (0.8 if samples > 1 else None)
            answers.append(await self.generate(messages, temperature=temp, max_tokens=max_tokens,
                                               seed=(1000 + i) if samples > 1 else None, ctx=ctx, model=model))
        if turn is not None:
            turn.candidates = answers
        return {"answer": answers[0], "samples": len(answers)}


def _sub(ctx: ToolContext | None) -> ToolContext:
    if ctx is None:
        return ToolContext(surface="plan")
    return ToolContext(surface=ctx.surface, correlation_id=ctx.correlation_id, caller=ctx.caller,
                       on_progress=ctx.on_progress, elicit=ctx.elicit, cancelled=ctx.cancelled, extra=dict(ctx.extra))


def _answer_text(plan: Plan, ns: dict[str, Any]) -> str:
    """The final answer: the last step's text; name any file it produced."""
    text = ns.get("last.text") or ""
    file = ns.get("last.file")
    if file and file not in text:
        text = (text + "\n" if text else "") + f"Saved: {file}"
    return text.strip() or f"Done: {' -> '.join(plan.tool_names())}."
