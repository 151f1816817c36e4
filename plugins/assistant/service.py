"""The assistant service: route a request, run cognition stages around the answer, run
the plan, and answer. Registered as ``app.services["assistant"]`` (and ``"router"``).

A turn may belong to a conversation (``conversation.py``): the coordinator then sees
the thread's summary and as many recent turns as fit its context. Attached documents
are read by the ``document.*`` tools and put, labelled, into the request the plan sees.
While it runs, a turn reports through ``ctx.progress`` (MCP progress notifications):
``step i/n <tool>: started|done in X s|failed: ...`` as plan steps start and finish,
``answer: <the answer so far>`` as the coordinator writes, and ``audio: <path>`` for
each sentence spoken when the request asked for speech (see docs/agents.md).

Delegation: the coordinator answers what it can itself (``assistant.chat``), and hands
programming to ``coder.*``, pictures to ``imagegen.*``, speech to ``voice.*`` and so on;
each decision is published as a ``Delegated`` event with its reason.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec

from core.capabilities import Chat, ChatRequest
from core.logging import get_logger
from core.paths import confine
from core.tools import ToolContext, ToolError

from . import costs
from .conversation import (
    SUMMARY_HEADER,
    SUMMARY_PROMPT,
    Conversation,
    ConversationStore,
    Tokens,
    clean_history,
    fallback_summary,
    fit_counted,
    history_key,
    measure_framing,
    render_turns,
)
from .events import Delegated, PlanReady, StageFailed
from .plan import Plan, Step, bind_args, execute, resolve
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
    max_conversations: int = 256  # conversations kept in memory; the least recently used go first
    context_tokens: int | None = None  # the coordinator's window; default: its model's context_size
    summary_words: int = 150  # length of the rolling summary of older turns
    progress_interval: float = 0.05  # seconds between two "answer: ..." progress messages
    max_document_chars: int = 24_000  # document text put into one request, all attachments together
    speak_sentences: bool = True  # speech requests: speak each sentence as soon as it is written
    # where trained router models are kept (keyed by what they were trained on); default <cache_dir>/router
    router_cache: str | None = None


class Assistant:
    def __init__(self, app: Any, settings: AssistantSettings | None = None) -> None:
        self.app = app
        self.settings = settings or AssistantSettings()
        cache = Path(self.settings.router_cache).expanduser() if self.settings.router_cache else \
            app.config.cache_dir / "router"
        self.router = Router(app.tools, cache_dir=cache)
        self.conversations = ConversationStore(self.settings.max_conversations)
        self.warmed: anyio.Event | None = None  # set once a daemon's background warm-up has the model
        self._summaries: dict[str, str] = {}  # client-held history prefix -> its summary
        self._framing: dict[str, int] = {}  # model -> tokens its chat template adds per message

    # -- the router's model ---------------------------------------------------------------

    def warming(self) -> anyio.Event:
        """The event ``warm`` sets (made in the event loop, before the warm-up is spawned)."""
        if self.warmed is None:
            self.warmed = anyio.Event()
        return self.warmed

    async def warm(self) -> None:
        """Train or load the router's model in a worker thread (training is CPU-bound; on
        shutdown the thread is abandoned: it only fills a cache)."""
        event = self.warming()
        model = await anyio.to_thread.run_sync(self.router.warm, abandon_on_cancel=True)
        log.info("router ready", model=model.source)
        event.set()

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
                  conversation: str | None = None, history: list[Any] | None = None,
                  ctx: ToolContext | None = None) -> Turn:
        """Answer one request; with ``conversation`` (an id) or ``history`` (the client's own
        OpenAI-style messages) the coordinator also sees the thread."""
        ctx = ctx or ToolContext(surface="python")
        atts = self.attachments(attachment_paths)
        if not text.strip() and not atts:
            raise ToolError("ask something: give a text, an attachment, or both")
        if conversation is None:
            return await self._ask(text, atts, session_id, None, clean_history(history or []), ctx)
        conv = self.conversations.get(conversation)
        async with conv.lock:  # one turn at a time per conversation: the next one sees this answer
            turn = await self._ask(text, atts, session_id, conv, list(conv.turns), ctx)
            if turn.folded:
                conv.fold(*turn.folded)
            conv.add(turn.transcript, turn.answer or "")
        return turn

    async def _ask(self, text: str, atts: list[Attachment], session_id: str, conv: Conversation | None,
                   history: list[dict[str, str]], ctx: ToolContext) -> Turn:
        docs = [a for a in atts if _is_document(a)]
        media = [a for a in atts if not _is_document(a)]
        if conv is not None:
            if docs:
                conv.documents = [d.path for d in docs]
            elif not media and conv.documents:
                # A follow-up about the documents attached earlier in this conversation ("and
                # what does section 2 say?"): read them again for this question.
                docs = [self._carried(p) for p in conv.documents]
                docs = [d for d in docs if d is not None]
        if docs and not text.strip():
            text = "Summarize the attached document." if len(docs) == 1 else "Summarize the attached documents."
        turn = Turn(text=text, session_id=session_id, attachments=atts, app=self.app,
                    correlation_id=ctx.correlation_id, history=history,
                    summary=conv.summary if conv else "", conversation_id=conv.id if conv else None)
        turn._generate = lambda prompt, **kw: self.generate(prompt, **kw)
        reporter = _Reporter(ctx, self.settings.progress_interval)
        turn.on_text = reporter.delta
        request = text
        if docs:
            request = text + "\n\n" + await self._documents(turn, docs, ctx)
        plan, precomputed = await self.route(text, media, session_id=session_id, ctx=ctx)
        self._every_attachment(plan, media)
        turn.plan = plan
        turn.metadata["skipped"] = skip_unavailable(plan, self.app)
        if "s1" in precomputed:
            turn.metadata["transcript"] = precomputed["s1"].text()
        speak = self._speak_as_written(plan) if self.settings.speak_sentences else None
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

            async def run() -> dict[str, Any]:
                return await execute(plan, self.app, request=request, attachments=[a.path for a in media],
                                     session_id=session_id, ctx=sub, reroute=reroute, on_result=on_result,
                                     precomputed=precomputed, on_step=reporter.step)

            if speak is None:
                ns = await run()
            else:
                ns = await self._speaking(turn, reporter, speak, run, sub)
            await reporter.flush()
            turn.answer = _answer_text(plan, ns)
        for stage in reversed(stages):
            await self._stage(turn, stage, "after")
        if turn.metadata["skipped"] and turn.answer is not None:
            turn.answer += "\n\n" + "\n".join(f"(Skipped {line})" for line in turn.metadata["skipped"])
        if turn.uncertain and turn.answer and not turn.metadata.get("uncertainty_marked"):
            turn.answer = f"(I am not certain about this.) {turn.answer}"
        return turn

    def _every_attachment(self, plan: Plan, media: list[Attachment]) -> None:
        """The router plans one vision step on the first image (or video). With several of the
        same kind, each gets that step and the coordinator answers from all of them, labelled."""
        if len(media) < 2 or len(plan.steps) != 1 or "assistant.chat" not in self.app.tools:
            return
        first = plan.steps[0]
        if not first.tool.startswith("vision.") or first.args.get("file") != "{attachment0}" \
                or any(a.kind != media[0].kind for a in media) or media[0].kind not in ("image", "video"):
            return
        steps = [msgspec.structs.replace(first, id=f"s{i + 1}", args={**first.args, "file": f"{{attachment{i}}}"})
                 for i in range(len(media))]
        seen = "\n\n".join(f"[Attachment {i + 1}: {a.path.rsplit('/', 1)[-1]} ({a.kind})]\n{{s{i + 1}.text}}"
                            for i, a in enumerate(media))
        steps.append(Step(id=f"s{len(media) + 1}", tool="assistant.chat", role="coordinator",
                          args={"text": "{request}\n\nWhat each attachment shows:\n\n" + seen}))
        plan.steps = steps
        plan.reason += f"; {len(media)} {media[0].kind}s attached: {first.tool} on each, then one answer from all"

    # -- documents ---------------------------------------------------------------------------

    def _carried(self, path: str) -> Attachment | None:
        try:
            return detect(path)
        except OSError:  # moved or deleted since: the conversation goes on without it
            return None

    async def _documents(self, turn: Turn, docs: list[Attachment], ctx: ToolContext) -> str:
        """The attached documents as labelled text for the request (whole, or the passages
        most relevant to the question when they are long), through ``document.context``."""
        if "document.context" not in self.app.tools:
            names = ", ".join(a.path.rsplit("/", 1)[-1] for a in docs)
            raise ToolError(f"reading {names} needs the document plugin: enable it (plugins = [..., \"document\"] "
                            "in loom.toml, or remove it from [plugins] disable)")
        budget = min(self.settings.max_document_chars,
                     max(2000, (self._context_tokens() - self.settings.max_tokens - 600) * 3 * 2 // 3))
        result = await self.app.call("document.context", {
            "paths": [a.path for a in docs], "question": turn.text, "max_chars": budget}, ctx=_sub(ctx))
        out = result.structured if isinstance(result.structured, dict) else {}
        turn.documents = list(out.get("documents", []))
        failed = [d for d in turn.documents if d.get("error")]
        if failed and len(failed) == len(turn.documents) and len(docs) == len(turn.attachments):
            raise ToolError("; ".join(f"{d['name']}: {d['error']}" for d in failed))
        return out.get("text") or result.text()

    # -- speech as the answer is written -------------------------------------------------------

    def _speak_as_written(self, plan: Plan) -> Step | None:
        """The ``voice.speak`` step that reads the coordinator's answer aloud, if the plan has one:
        it is taken out of the plan and fed sentence by sentence while the answer streams."""
        if "voice.speak" not in self.app.tools:
            return None
        for i, step in enumerate(plan.steps):
            src = step.args.get("text")
            if step.tool != "voice.speak" or not isinstance(src, str):
                continue
            m = re.fullmatch(r"\{(s\d+)\.text\}", src)
            if m and any(s.id == m.group(1) and s.tool == "assistant.chat" for s in plan.steps[:i]) \
                    and i == len(plan.steps) - 1:
                return plan.steps.pop(i)
        return None

    async def _speaking(self, turn: Turn, reporter: _Reporter, step: Step,
                        run: Callable[[], Awaitable[dict[str, Any]]], ctx: ToolContext) -> dict[str, Any]:
        """Run the plan while a second task speaks each finished sentence, in order."""
        send, receive = anyio.create_memory_object_stream[str](64)
        files: list[str] = turn.metadata.setdefault("audio", [])
        schema = self.app.tools.get("voice.speak").input_schema
        scratch = self.app.config.data_dir / "tmp" / "plans"

        async def speaker() -> None:
            from .plan import result_file

            async with receive:
                async for sentence in receive:
                    values = {**{k: v for k, v in step.args.items() if k != "text"}, "text": sentence}
                    result = await self.app.call("voice.speak", bind_args(schema, values), ctx=ctx)
                    path = result_file(result, scratch)
                    if path:
                        files.append(path)
                        await reporter.send(f"audio: {path}")

        reporter.sentences = send
        async with anyio.create_task_group() as tg:
            tg.start_soon(speaker)
            async with send:
                ns = await run()
                rest = reporter.take_sentence(final=True)
                if rest:
                    await send.send(rest)
        reporter.sentences = None
        return ns

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

    def _context_tokens(self, tokens: Tokens | None = None) -> int:
        """The coordinator's window: configured, else what the loaded model reports, else its config."""
        if self.settings.context_tokens:
            return self.settings.context_tokens
        if tokens is not None and tokens.chat is not None and tokens.chat.context_size:
            return tokens.chat.context_size
        try:
            return self.app.pool.config_for(self.app.pool.model_for("coordinator")).context_size
        except Exception:
            return 4096

    async def generate(self, prompt: str | list[dict[str, Any]], *, system: str | None = None,
                       temperature: float | None = None, max_tokens: int | None = None,
                       seed: int | None = None, ctx: ToolContext | None = None, model: str | None = None,
                       on_delta: Callable[[str], Awaitable[None]] | None = None) -> str:
        """One answer from the coordinator model (or ``model``: the reasoning stage's expert tier),
        through a ``Chat`` handle; ``on_delta`` sees the text as it is generated."""
        name = model or self.app.pool.model_for("coordinator")
        messages = prompt if isinstance(prompt, list) else [
            {"role": "system", "content": system or self.settings.system_prompt},
            {"role": "user", "content": prompt}]
        async with self.app.pool.use(name, Chat, reason="assistant") as chat:
            result = await chat.complete(messages, max_tokens=max_tokens or self.settings.max_tokens,
                                         temperature=self.settings.temperature if temperature is None else temperature,
                                         seed=seed, cancel=ctx.cancelled if ctx else None, on_delta=on_delta)
        return result.text.strip()

    async def sample(self, messages: list[dict[str, Any]], n: int, *, temperature: float,
                     max_tokens: int | None = None, ctx: ToolContext | None = None, model: str | None = None,
                     turn: Turn | None = None) -> list[str]:
        """``n`` answers to ``messages`` from one ``Chat.sample`` call (seeds 1000..): llama.cpp
        evaluates the prompt once and decodes the samples together; other backends run them
        one after another. How it went is kept in ``turn.metadata["samples"]``."""
        name = model or self.app.pool.model_for("coordinator")
        async with self.app.pool.use(name, Chat, reason="assistant") as chat:
            res = await chat.sample(ChatRequest(messages=messages, max_tokens=max_tokens or self.settings.max_tokens,
                                                temperature=temperature, seed=1000),
                                    n, cancel=ctx.cancelled if ctx else None)
        if turn is not None:
            turn.metadata["samples"] = {"n": n, "prompt_evaluations": res.prompt_evaluations,
                                        "prompt_tokens": res.usage.prompt_tokens,
                                        "completion_tokens": res.usage.completion_tokens,
                                        "seconds": round(res.usage.total_s, 3),
                                        "logprobs": res.logprobs}  # per sample (the confidence uses them)
        return [t.strip() for t in res.texts]

    async def chat(self, text: str, *, system: str | None, turn: Turn | None, max_tokens: int | None,
                   temperature: float | None, ctx: ToolContext | None) -> dict[str, Any]:
        """Answer directly, shaped by the turn's stages (context, instructions, strategy, samples)
        and its conversation (summary + the recent turns that fit)."""
        sys_parts = [system or self.settings.system_prompt]
        user = text
        samples = 1
        history: list[dict[str, str]] = []
        model = None
        if turn is not None:
            sys_parts += turn.instructions
            if turn.context:
                sys_parts.append("What you know that may help:\n" + "\n".join(f"- {c}" for c in turn.context))
            if turn.strategy == "chain_of_thought":
                user += "\n\nThink it through step by step, then give the final answer on the last line."
            samples = max(1, min(turn.samples, 8))
            model = (turn.metadata.get("reasoning") or {}).get("model")  # the tier the reasoning stage chose
            if turn.history or turn.summary:
                history = await self._thread(turn, "\n\n".join(sys_parts), user, max_tokens, model)
                if turn.summary:
                    sys_parts.append(SUMMARY_HEADER + turn.summary)
        messages = [{"role": "system", "content": "\n\n".join(sys_parts)}, *history, {"role": "user", "content": user}]
        if turn is not None:
            turn.messages = messages
        # One answer streams as it is written; several samples are compared first, so they do not.
        stream = turn.on_text if turn is not None and samples == 1 else None
        if samples == 1:
            answers = [await self.generate(messages, temperature=temperature, max_tokens=max_tokens, ctx=ctx,
                                           model=model, on_delta=stream)]
        else:
            answers = await self.sample(messages, samples, temperature=0.8 if temperature is None else temperature,
                                        max_tokens=max_tokens, ctx=ctx, model=model, turn=turn)
        if turn is not None:
            turn.candidates = answers
        return {"answer": answers[0], "samples": len(answers)}

    # -- conversations ------------------------------------------------------------------

    @asynccontextmanager
    async def _tokens(self, model: str | None) -> AsyncIterator[Tokens]:
        """Token counts from the model that will answer (``Chat.count_tokens``), holding it
        loaded meanwhile (it answers next); the character estimate when it cannot be had."""
        async with AsyncExitStack() as stack:
            tokens = Tokens()
            try:
                name = model or self.app.pool.model_for("coordinator")
                chat = await stack.enter_async_context(self.app.pool.use(name, Chat, reason="assistant"))
                if name not in self._framing:
                    self._framing[name] = await measure_framing(chat)
                tokens = Tokens(chat, self._framing[name])
            except Exception as exc:  # no coordinator, or it cannot count: the answer step reports the cause
                log.info("conversation trimmed by estimate: no model to count tokens with", error=repr(exc))
            yield tokens

    async def _thread(self, turn: Turn, system: str, user: str, max_tokens: int | None,
                      model: str | None = None) -> list[dict[str, str]]:
        """The recent turns that fit the answering model's window, counted with its own
        tokenizer; older ones folded into ``turn.summary``. The whole prompt plus the answer's
        ``max_tokens`` stays inside the window."""
        answer_room = max_tokens or self.settings.max_tokens
        summary_room = self.settings.summary_words * 3  # the summary is capped at 8 characters a word
        async with self._tokens(model) as tokens:
            window = self._context_tokens(tokens)
            header = await tokens.text("\n\n" + SUMMARY_HEADER)
            fixed = await tokens.messages([{"role": "system", "content": system}, {"role": "user", "content": user}])
            budget = max(0, window - answer_room - fixed - header - summary_room)
            fitted = await fit_counted(turn.history, budget, tokens)
            if fitted.overflow:
                if turn.conversation_id is not None:
                    summary = await self._summarize(turn.summary, fitted.overflow, tokens)
                    turn.folded = (len(fitted.overflow), summary)
                else:
                    summary = await self._summarize_held(fitted.overflow, tokens)
                turn.summary = summary
            kept = fitted.turns
            # The check on the prompt as sent (template, summary and all); the counts above make
            # a miss rare, and a turn dropped here stays in the conversation for the next fold.
            while kept:
                sys_text = system + ("\n\n" + SUMMARY_HEADER + turn.summary if turn.summary else "")
                prompt = [{"role": "system", "content": sys_text}, *kept, {"role": "user", "content": user}]
                if await tokens.messages(prompt) + answer_room <= window:
                    break
                kept = kept[2:]  # the oldest exchange
        return kept

    async def _summarize_held(self, overflow: list[dict[str, str]], tokens: Tokens) -> str:
        """The summary of a client-held history's oldest turns, reusing the one computed for
        the longest prefix seen before (a chat client resends its whole history each time)."""
        start, summary = 0, ""
        for k in range(len(overflow), 0, -1):
            hit = self._summaries.get(history_key(overflow[:k]))
            if hit is not None:
                start, summary = k, hit
                break
        if start < len(overflow):
            summary = await self._summarize(summary, overflow[start:], tokens)
            if len(self._summaries) >= 4 * self.settings.max_conversations:
                self._summaries.pop(next(iter(self._summaries)))
            self._summaries[history_key(overflow)] = summary
        return summary

    async def _summarize(self, summary: str, turns: list[dict[str, str]], tokens: Tokens) -> str:
        """Fold ``turns`` into ``summary`` with the coordinator, in batches that fit its window."""
        words = self.settings.summary_words
        window = self._context_tokens(tokens)

        async def room_for_turns() -> int:  # the window less the answer, the prompt and the summary so far
            prompt = SUMMARY_PROMPT.format(words=words, summary=summary or "(nothing yet)", turns="")
            return max(256, window - words * 2 - 32 - await tokens.message(prompt))

        batch: list[dict[str, str]] = []
        used, room = 0, await room_for_turns()
        for t in turns:
            cost = await tokens.text(render_turns([t], limit=room)) + 1  # +1: the newline between turns
            if batch and used + cost > room:
                summary = await self._summarize_batch(summary, batch, room)
                batch, used, room = [], 0, await room_for_turns()
            batch.append(t)
            used += cost
        if batch:
            summary = await self._summarize_batch(summary, batch, room)
        return await self._hold(summary, words * 3, tokens)

    @staticmethod
    async def _hold(summary: str, room: int, tokens: Tokens) -> str:
        """The summary cut to ``room`` tokens, keeping its end (the newest)."""
        while summary and await tokens.text(summary) > room:
            summary = "..." + summary[len(summary) // 10 + 4:]
        return summary

    async def _summarize_batch(self, summary: str, turns: list[dict[str, str]], room: int) -> str:
        words = self.settings.summary_words
        prompt = SUMMARY_PROMPT.format(words=words, summary=summary or "(nothing yet)",
                                       turns=render_turns(turns, limit=room))
        try:
            out = await self.generate(prompt, system="You summarise conversations faithfully and briefly.",
                                      temperature=0.1, max_tokens=words * 2)
        except Exception as exc:  # no coordinator, or it failed: keep the gist without one
            log.warning("conversation summary fell back to extraction", error=repr(exc))
            out = ""
        return out[: words * 8] if out.strip() else fallback_summary(summary, turns, words * 8)


# The one command that makes a missing role available (what `loom ask` tells the user).
ENABLE_ROLE = {
    "vlm": "loom pull Qwen/Qwen3-VL-2B-Instruct-GGUF:Q4_K_M",
    "coder": "loom pull Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF:Q4_K_M",
    "coordinator": "loom pull Qwen/Qwen3-1.7B-GGUF:Q4_K_M --role coordinator",
    "imagegen": "loom models add flux --backend diffusers --file /path/to/FLUX.1-schnell --role imagegen",
    "video": "loom models add wan --backend diffusers --file /path/to/Wan2.1-T2V-1.3B-Diffusers --role video",
}


def skip_unavailable(plan: Plan, app: Any) -> list[str]:
    """Degrade instead of failing: drop the steps whose tool is not there or whose model role
    nothing serves (and the steps that need their output); returns one line per skipped part
    with the command that would enable it. When nothing is left, the coordinator answers the
    request itself, so "draw a lighthouse and tell me about it" still tells.
    """
    from core.pool import ModelUnavailable

    from .costs import role_of
    from .plan import refs

    missing: dict[str, str] = {}
    for step in plan.steps:
        role = step.role or role_of(step.tool, app)
        if step.tool not in app.tools:
            plugin = step.tool.split(".", 1)[0]
            missing[step.id] = (f"{step.tool}: the {plugin} plugin is not enabled; enable it with: "
                                f"loom call admin.enable_plugin name={plugin}")
            continue
        if role is None or step.model:
            continue
        try:
            app.pool.model_for(role)
        except ModelUnavailable:
            missing[step.id] = (f"{step.tool}: no {role} model is configured; enable it with: "
                                f"{ENABLE_ROLE.get(role, f'loom models add NAME --file PATH --role {role}')}")
    if not missing:
        return []
    gone = set(missing)
    grew = True
    while grew:  # a step that reads a skipped step's output cannot run either
        grew = False
        for step in plan.steps:
            if step.id not in gone and refs(step) & gone:
                gone.add(step.id)
                grew = True
    kept = [s for s in plan.steps if s.id not in gone]
    if not kept and "assistant.chat" in app.tools:
        kept = [Step(id="s1", tool="assistant.chat", args={"text": "{request}"}, role="coordinator")]
    plan.steps[:] = kept
    plan.reason += f"; skipped {', '.join(sorted(gone))} (not available here)"
    return list(missing.values())


def _sub(ctx: ToolContext | None) -> ToolContext:
    if ctx is None:
        return ToolContext(surface="plan")
    return ToolContext(surface=ctx.surface, correlation_id=ctx.correlation_id, caller=ctx.caller,
                       on_progress=ctx.on_progress, elicit=ctx.elicit, cancelled=ctx.cancelled, extra=dict(ctx.extra))


def _answer_text(plan: Plan, ns: dict[str, Any]) -> str:
    """The final answer: the last step's text; name any file it produced. When the last step
    spoke, the answer is the words spoken (the audio's caption), not the tool's summary
    ("1.4 s of speech ..."): that is what a client shows beside the audio."""
    text = ns.get("last.text") or ""
    done = ns.get("last.result")
    last = next((s for s in plan.steps if done is not None and ns.get(f"{s.id}.result") is done), None)
    if last is not None and last.tool == "voice.speak":
        with contextlib.suppress(ToolError):
            spoken = resolve(last.args.get("text"), ns)
            if isinstance(spoken, str) and spoken.strip():
                text = spoken
    file = ns.get("last.file")
    if file and file not in text:
        text = (text + "\n" if text else "") + f"Saved: {file}"
    return text.strip() or f"Done: {' -> '.join(plan.tool_names())}."


_DOCUMENT_MIME = ("application/pdf", "application/vnd.openxmlformats-officedocument.wordprocessingml.document")


def _is_document(a: Attachment) -> bool:
    """Read as text by ``document.*``: PDF, DOCX and every text file (Markdown, CSV, code...)."""
    return a.kind == "text" or a.mime_type in _DOCUMENT_MIME


_SENTENCE_END = re.compile(r"[.!?。！？…](?:[\"')\]]*)\s+")


class _Reporter:
    """One turn's progress messages (``ctx.progress``) and its answer stream.

    Messages (the contract ``loom ask``/``loom chat`` read, see docs/agents.md):
    ``step i <tool>: started``, ``step i <tool>: done in X s``, ``step i <tool>: failed: why``,
    ``answer: <the whole answer so far>`` (at most every ``interval`` seconds, and once at
    the end) and ``audio: <path>``. ``progress`` counts messages, so it always increases.
    ``ctx.extra["answer_delta"]``, when a surface sets it, receives every delta as it comes.
    """

    def __init__(self, ctx: ToolContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self.count = 0
        self.answer = ""
        self.sent = ""
        self.last = 0.0
        self.on_delta: Callable[[str], Awaitable[None]] | None = ctx.extra.get("answer_delta")
        self.sentences: Any = None  # a memory stream of finished sentences while speaking
        self._unspoken = 0  # index in ``answer`` where the next sentence starts

    async def send(self, message: str) -> None:
        self.count += 1
        await self.ctx.progress(self.count, None, message)

    async def step(self, event: Any) -> None:
        name = type(event).__name__
        if name == "StepStarted":
            await self.send(f"step {event.index} {event.tool}: started")
        elif name == "StepFinished":
            await self.flush()  # the whole answer so far before "done": a client sees it complete
            await self.send(f"step {event.index} {event.tool}: " + (
                f"done in {event.seconds:.2f} s" if event.ok else f"failed: {event.error}"))

    async def delta(self, text: str) -> None:
        self.answer += text
        if self.on_delta is not None:
            await self.on_delta(text)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.sent = self.answer
            await self.send("answer: " + self.answer)
        if self.sentences is not None:
            sentence = self.take_sentence()
            while sentence:
                await self.sentences.send(sentence)
                sentence = self.take_sentence()

    def take_sentence(self, final: bool = False) -> str:
        """The next finished sentence not yet spoken (of at least a few words), or ''."""
        rest = self.answer[self._unspoken:]
        if final:
            self._unspoken = len(self.answer)
            return rest.strip()
        for m in _SENTENCE_END.finditer(rest):
            if m.end() >= 24 or len(rest[:m.end()].split()) >= 4:
                self._unspoken += m.end()
                return rest[:m.end()].strip()
        return ""

    async def flush(self) -> None:
        if self.answer and self.sent != self.answer:
            self.sent = self.answer
            await self.send("answer: " + self.answer)
