"""The router: a request and its attachments in, a runnable plan of tool steps out.

``Router.decide`` is the synchronous fast path (no LLM, no I/O besides reading the
attachments' first bytes):

1. Split the request into clauses (``rules.split_clauses``).
2. Classify each clause with the learned model (``intent_model``) in its context: the
   attachment kinds for the first clause, ``spoken`` for a transcript, the previous
   step's tool for a follow-up. The labels are tools, learned from the corpus and from
   the examples tools register; a label ``none`` means "part of the previous step".
3. Keep the most probable tool that can actually run: it exists in the registry, and its
   schema's required arguments can be filled from the clause, an attachment or the
   previous step's output (``slots``). The confidence is the model's calibrated
   probability of the chosen intent, renormalised over the tools that can run.
4. Structure the corpus shows: attached audio is transcribed first; an image attached
   to a request for a tool that takes no image is turned into text first.

``Assistant.route`` (service.py) adds what needs the runtime: a plugin's ``loom_route``
answer, transcribing a spoken request while routing, and the coordinator LLM when the
confidence is below the threshold (``llm_route``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from core.tools import ToolError

from . import training
from .features import sparse
from .plan import Plan, Step, bind_args
from .rules import split_clauses
from .slots import values_for
from .sniff import detect
from .turn import Attachment

Embed = Callable[[list[str]], np.ndarray]

CHAT = "assistant.chat"  # the assistant's own answer: the fallback when nothing else can run
NONE = "none"  # a follow-up clause that adds no step ("... and summarise it" after opening a page)
LLM_THRESHOLD = 0.5  # below this confidence the coordinator LLM is asked (when allowed)
MODEL_NAME = ("logistic regression over hashed char 3-4-grams + word 1-2-grams, trained with typo/filler noise, "
              "temperature-calibrated")


class RouteRequest(msgspec.Struct, kw_only=True):
    """What ``loom_route`` hooks receive."""

    text: str = ""
    attachments: list[str] = []
    kinds: list[str] = []
    session_id: str = "default"


class Router:
    """Routes requests with a model trained on the corpus plus the registry's tool examples.

    ``tools`` is the tool registry (``app.tools``): only its tools are planned, with
    arguments that validate against their schemas. The model is (re)trained lazily when
    the registry's tools or examples change; ``cache_dir`` keeps trained models on disk.
    """

    def __init__(self, tools: Any, *, cache_dir: Path | None = None,
                 rows: list[dict[str, Any]] | None = None, embed: Embed | None = None) -> None:
        self.tools = tools
        self.cache_dir = cache_dir
        self.embed = embed  # a sentence embedding beside the n-grams (model selection only: bench/routing_cv.py)
        self._rows = rows  # another corpus (model selection); None: the shipped one, read on first use
        self._intents: dict[str, str] | None = None
        self._state: tuple[Any, ...] | None = None
        self._lock = threading.Lock()  # the daemon's background warm-up and a first request share one model
        self._rows_lock = threading.Lock()

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The training corpus, read (and the writers' files aligned) on first use: in the
        daemon's background warm-up, not while the app starts."""
        with self._rows_lock:
            if self._rows is None:
                self._rows = training.corpus_rows()
            return self._rows

    @property
    def intents(self) -> dict[str, str]:
        """Tool -> intent, as the corpus labels them (tools known only by examples: added by ``_build``)."""
        rows = self.rows
        with self._rows_lock:
            if self._intents is None:
                self._intents = training.intents_from(rows)
            return self._intents

    # -- the model --------------------------------------------------------------------

    def _registry_key(self) -> tuple[Any, ...]:
        return tuple(sorted((t.name, t.examples) for t in self.tools.list()))

    def model(self) -> training.IntentModel:
        key = self._registry_key()
        with self._lock:
            if self._state is None or self._state[0] != key:
                self._build(key)
        return self._state[1]  # type: ignore[index]

    def _build(self, key: tuple[Any, ...]) -> None:
        tools = self.tools.list()
        units = training.corpus_units(self.rows) + training.example_units(tools)
        model = training.train(units, cache_dir=self.cache_dir, embed=self.embed,
                               embed_name=getattr(self.embed, "name", "embed") if self.embed else None)
        needs = {t.name: training.media_kinds(t.input_schema) for t in tools}
        producers = training.producers_from(self.rows, needs)
        converters = self._converters()
        groups = {tool.split(".")[0]: intent for tool, intent in training.intents_from(self.rows).items()}
        for t in tools:  # a tool with examples but no corpus intent: its plugin's, or the plugin's name
            if t.examples and t.name not in self.intents:
                group = t.name.split(".")[0]
                self.intents[t.name] = groups.get(group, group)
        self._state = (key, model, needs, producers, converters)

    def _converters(self) -> dict[str, str]:
        """Attachment kind -> the tool the corpus's plans run first on it when the clause's
        own tool does not take that kind (audio: transcribe; image: describe)."""
        out: dict[str, str] = {}
        for row in self.rows:
            first = row["parts"][0][1].split("+")[0]
            if row["attachments"] and row["steps"][0] != first:
                out.setdefault(row["attachments"][0], row["steps"][0])
        return out

    def warm(self) -> training.IntentModel:
        """Train (or load) now, so the first request does not wait."""
        return self.model()

    @property
    def ready(self) -> bool:
        """Whether a model for the registry as it is now is in memory (routing will not train)."""
        return self._state is not None and self._state[0] == self._registry_key()

    # -- the fast path -----------------------------------------------------------------

    def decide(self, text: str, attachments: Sequence[Attachment | str] = (), *,
               transcript: str | None = None) -> Plan:
        """A plan from the learned model alone. ``transcript``: what attached audio says."""
        t0 = time.perf_counter()
        model = self.model()
        atts = [a if isinstance(a, Attachment) else detect(a) for a in attachments]
        kinds = [a.kind for a in atts]
        text = (text or "").strip()
        if text.lower().startswith("[spoken]"):
            text = text[8:].strip()
        builder = _Builder(self, model, atts)
        if "audio" in kinds:
            plan = builder.audio(text, transcript)
        else:
            plan = builder.request(text, kinds)
        plan.seconds = plan.decide_s = time.perf_counter() - t0
        return plan

    # -- what the LLM fallback needs ------------------------------------------------------

    def candidates(self, plan: Plan) -> list[str]:
        """The tools that could run as the plan's deciding step, best first."""
        return [d["tool"] for d in plan.decisions[0]["valid"]] if plan.decisions else []

    def replan(self, tool: str, text: str, attachments: Sequence[Attachment], *,
               transcript: str | None = None) -> Plan:
        """The plan with its first clause forced to ``tool`` (the LLM's choice among the valid ones)."""
        builder = _Builder(self, self.model(), list(attachments), force=tool)
        if any(a.kind == "audio" for a in attachments):
            return builder.audio(text, transcript)
        return builder.request(text, [a.kind for a in attachments])


class _Builder:
    """Builds one plan: classifies clauses in order and chains their steps."""

    def __init__(self, router: Router, model: Any, atts: list[Attachment], force: str | None = None) -> None:
        self.router, self.model, self.atts, self.force = router, model, atts, force
        _, _, self.needs, self.producers, self.converters = router._state  # type: ignore[misc]
        self.steps: list[Step] = []
        self.decisions: list[dict[str, Any]] = []
        self.used: set[int] = set()  # attachments already consumed by a step

    # -- entry points ---------------------------------------------------------------------

    def request(self, text: str, kinds: list[str]) -> Plan:
        if not text:
            raise ToolError("nothing to route: give a text, an attachment, or both")
        input_type = next((k for k in ("image", "video", "document") if k in kinds), "text")
        confidence, intent = self._clauses(text, training.context_for(kinds), single_request=True)
        reason = self._reason(input_type)
        return self._plan(intent, confidence, input_type, reason)

    def audio(self, text: str, transcript: str | None) -> Plan:
        index = next(i for i, a in enumerate(self.atts) if a.kind == "audio")
        converter = self.router._state[4].get("audio")  # type: ignore[index]
        if converter is None or converter not in self.router.tools:
            raise ToolError("audio is attached but no tool can transcribe it: enable the voice plugin")
        self.used.add(index)
        self._add(converter, {"file": f"{{attachment{index}}}"})
        if text:  # typed words about the audio: transcribe, then what they ask of the transcript
            confidence, _ = self._clauses(text, training.context_for(["audio"]), source="s1")
            return self._plan(self.router.intents.get(converter, "transcribe"), confidence, "audio",
                              "audio is attached with typed instructions about it: " + self._reason("audio"))
        if transcript is None:
            plan = self._plan("transcribe", 0.5, "audio", "audio with no text: transcribe it, then route what it "
                              "says (no transcriber was available while routing)", by="rules")
            plan.then_route = True
            return plan
        if not transcript.strip():
            return self._plan("transcribe", 0.9, "audio", "audio with no text and no words in it: transcribe it",
                              by="rules")
        confidence, intent = self._clauses(transcript, training.context_for((), spoken=True), source="s1",
                                           spoken=True)
        return self._plan(intent, confidence, "audio", "spoken request: " + self._reason("audio"))

    # -- clauses ----------------------------------------------------------------------------

    def _clauses(self, text: str, context: tuple[str, ...], *, source: str | None = None, spoken: bool = False,
                 single_request: bool = False) -> tuple[float, str]:
        clauses = split_clauses(text)
        confidence, intent = 1.0, None
        for i, clause in enumerate(clauses):
            prev = self.steps[-1] if self.steps else None
            ctx = context if i == 0 else training.context_for((), after=prev.tool if prev else None)
            whole = "{request}" if (len(clauses) == 1 and source is None) else clause
            if source is not None and len(clauses) == 1 and spoken:
                whole = f"{{{source}.text}}"
            tool, p, tool_intent, args, decision = self._choose(clause, ctx, first=i == 0, prev=prev,
                                                                 request_text=whole, spoken=spoken)
            self.decisions.append(decision)
            if i == 0:
                confidence, intent = p, tool_intent
            if tool == NONE or (prev is not None and tool == prev.tool and i > 0):
                continue  # part of the previous step
            if spoken and i == 0 and prev is not None and tool == prev.tool:
                continue  # a recording that asks for nothing: transcribing it is the whole plan
            if i == 0 and prev is not None and tool == prev.tool:
                continue  # "transcribe this" with audio: the transcription is already step 1
            for part, part_args in args:
                self._add(part, part_args)
        return confidence, intent or "chat"

    def _choose(self, clause: str, ctx: tuple[str, ...], *, first: bool, prev: Step | None, request_text: str,
                spoken: bool) -> tuple[str, float, str, list[tuple[str, dict[str, Any]]], dict[str, Any]]:
        model = self.model
        embed = self.router.embed
        dense = embed([clause]) if embed is not None and model.wd is not None else None
        probs = model.proba([sparse(clause, ctx)], dense)[0]
        order = np.argsort(-probs)
        valid: list[tuple[str, float, list[tuple[str, dict[str, Any]]]]] = []
        rejected: list[str] = []
        missing: list[str] = []  # fitting tools that no enabled plugin provides
        for j in order:
            tool = model.labels[j]
            if probs[j] < 0.002 and valid:
                break
            absent = [t for t in tool.split("+") if t != NONE and t not in self.router.tools]
            if absent:
                if not valid and probs[j] >= 0.2:
                    missing += absent
                continue
            args = self._label_args(tool, clause, first=first, prev=prev, request_text=request_text, spoken=spoken)
            if args is None:
                rejected.append(tool)
                continue
            valid.append((tool, float(probs[j]), args))
        if not valid:  # nothing the model knows can run: the coordinator answers
            valid = [(CHAT, 0.0, [(CHAT, {"text": request_text})])]
        total = sum(p for _, p, _ in valid) or 1.0
        by_intent: dict[str, float] = {}
        for tool, p, _ in valid:
            by_intent[self._intent(tool)] = by_intent.get(self._intent(tool), 0.0) + p / total
        chosen = next((v for v in valid if v[0] == self.force), None) if self.force and first else None
        tool, p, args = chosen or valid[0]
        intent = self._intent(tool)
        decision = {"clause": clause, "context": list(ctx), "tool": tool,
                    "confidence": round(by_intent[intent], 3),
                    "valid": [{"tool": t, "p": round(q / total, 3)} for t, q, _ in valid[:5]],
                    "cannot_run": rejected[:5], "not_installed": missing}
        return tool, by_intent[intent], intent, args, decision

    def _intent(self, tool: str) -> str:
        return "none" if tool == NONE else self.router.intents.get(tool, tool.split(".")[0])

    # -- arguments ---------------------------------------------------------------------------

    def _label_args(self, label: str, clause: str, *, first: bool, prev: Step | None, request_text: str,
                    spoken: bool) -> list[tuple[str, dict[str, Any]]] | None:
        """The steps for a label: one tool, ``none`` (no step), or ``a+b`` (one clause asking
        for two steps, "describe it out loud"), each with its arguments; None if one cannot run."""
        if label == NONE:
            return [] if prev is not None and not first else None
        out: list[tuple[str, dict[str, Any]]] = []
        for k, tool in enumerate(label.split("+")):
            if k:
                prev, first = Step(id=f"s{len(self.steps) + k}", tool=out[-1][0], args=out[-1][1]), False
            args = self._args(tool, clause, first=first, prev=prev, request_text=request_text, spoken=spoken)
            if args is None:
                return None
            out.append((tool, args))
        return out

    def _args(self, tool: str, clause: str, *, first: bool, prev: Step | None, request_text: str,
              spoken: bool) -> dict[str, Any] | None:
        """Semantic arguments for ``tool`` from the clause, or None when it cannot run."""
        if tool not in self.router.tools:
            return None
        if first and prev is not None and tool == prev.tool:
            return dict(prev.args)  # "transcribe this" with the audio: step 1 already does it
        schema = self.router.tools.get(tool).input_schema
        if first or prev is None:
            default = request_text
        elif tool == CHAT:
            default = f"{clause}\n\n{{{prev.id}.text}}"
        else:
            default = f"{{{prev.id}.text}}"
        values = values_for(clause, schema, default_text=default)
        if tool == CHAT:
            values["text"] = default  # the coordinator reads the whole request, not a payload
        for kind in self.needs.get(tool, []):
            source = self._media(kind, prev, first)
            if source is None:
                return None
            values["file"] = source
        if first and not spoken and prev is not None and not self.needs.get(tool):
            # Typed words about attached audio ("translate it"): they apply to the transcript.
            values["text"] = f"{clause}\n\n{{{prev.id}.text}}"
        try:
            bound = bind_args(schema, values)
            self.router.tools.get(tool).validate(bound)
        except ToolError:
            return None
        return values

    def _media(self, kind: str, prev: Step | None, first: bool) -> str | None:
        """Where a step's image/video/audio comes from: the previous step's output when that
        tool produces one (a screenshot, a generated picture), else an attachment."""
        if not first and prev is not None and prev.tool in self.producers.get(kind, set()):
            return f"{{{prev.id}.file}}"
        for i, a in enumerate(self.atts):
            if a.kind == kind and i not in self.used:
                return f"{{attachment{i}}}"
        return None

    def _add(self, tool: str, args: dict[str, Any]) -> None:
        # An image sent with a request for a tool that takes none: turn it into text first.
        if not self.steps and not self.needs.get(tool):
            for i, a in enumerate(self.atts):
                conv = self.converters.get(a.kind)
                if conv and conv != tool and a.kind != "audio" and conv in self.router.tools and i not in self.used:
                    self.used.add(i)
                    self.steps.append(Step(id="s1", tool=conv, args={
                        "file": f"{{attachment{i}}}", "text": "Describe this in detail: layout, elements, text, "
                        "colours."}))
                    args = {**args, "text": f"{args.get('text', '{request}')}\n\nThe attached {a.kind} shows:\n"
                            "{s1.text}"}
                    break
        n = len(self.steps) + 1
        after = [self.steps[-1].id] if self.steps and not _refers(args) else []
        self.steps.append(Step(id=f"s{n}", tool=tool, args=args, after=after if n > 1 else []))

    # -- the plan -------------------------------------------------------------------------------

    def _reason(self, input_type: str) -> str:
        parts = []
        for d in self.decisions:
            alt = ", ".join(f"{v['tool']} {v['p']:.2f}" for v in d["valid"][1:3])
            alt = f"; next: {alt}" if alt else ""
            parts.append(f"{d['clause'][:60]!r} -> {d['tool']} ({d['confidence']:.2f}{alt})")
            if d["not_installed"]:
                parts.append(f"{', '.join(d['not_installed'])} would fit better but no enabled plugin provides it: "
                             "enable that plugin")
        return f"{input_type} request; " + "; ".join(parts)

    def _plan(self, intent: str, confidence: float, input_type: str, reason: str, by: str = "model") -> Plan:
        plan = Plan(intent=intent, steps=self.steps, reason=reason, confidence=round(float(confidence), 3),
                    input_type=input_type, decided_by=by, model=MODEL_NAME if by == "model" else "",
                    decisions=self.decisions)
        if self.decisions:
            alts = []
            for v in self.decisions[0]["valid"][1:]:
                i = self._intent(v["tool"])
                if i != intent and i not in alts:
                    alts.append(i)
            plan.alternatives = alts[:2]
        return plan


def _refers(args: dict[str, Any]) -> bool:
    return any(isinstance(v, str) and "{s" in v for v in args.values())
