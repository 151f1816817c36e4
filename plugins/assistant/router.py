"""The router: input type from the attachments' bytes, intent from rules + embeddings,
the coordinator LLM as the fallback, and the plan of tool steps.

``Router.decide`` is the synchronous fast path (no LLM, no I/O besides reading the
attachments' first bytes): rules first; when they are not decisive, the request's
MiniLM embedding is compared with intent prototypes. ``Router.route`` adds what needs
the runtime: a plugin's ``loom_route`` answer, transcribing a spoken request while
routing (only when a ``voice.transcribe`` tool is there to do it), the LLM fallback for
low confidence, and the time-conscious choice of models.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from . import rules
from .plan import Plan, Step
from .prototypes import PROTOTYPES
from .sniff import detect
from .turn import Attachment

Embed = Callable[[list[str]], np.ndarray]

EMBED_WEIGHT = 6.0  # rule points per unit of cosine similarity
DECISIVE = 3.0  # rule score that needs no embedding when it also leads by DECISIVE_MARGIN
DECISIVE_MARGIN = 1.5
LLM_THRESHOLD = 0.35  # below this confidence the coordinator LLM is asked (when allowed)
TEXT_INTENTS = ("chat", "code", "imagegen", "videogen", "speak", "research", "pc_control", "memory")

INTENT_TOOL = {"chat": "assistant.chat", "imagegen": "imagegen.generate", "videogen": "video.generate",
               "speak": "voice.speak", "transcribe": "voice.transcribe"}
IMAGE_PRODUCERS = {"imagegen.generate", "imagegen.edit", "system.screenshot"}


class RouteRequest(msgspec.Struct, kw_only=True):
    """What ``loom_route`` hooks receive."""

    text: str = ""
    attachments: list[str] = []
    kinds: list[str] = []
    session_id: str = "default"


class Router:
    def __init__(self, embedder: Embed | None = None, *, use_embeddings: bool = True) -> None:
        self.embedder = embedder
        self.use_embeddings = use_embeddings
        self._proto: tuple[Any, np.ndarray, list[str]] | None = None

    # -- embeddings ---------------------------------------------------------------------

    def _prototypes(self, embed: Embed) -> tuple[np.ndarray, list[str]]:
        if self._proto is None or self._proto[0] != embed:  # bound methods: equal, not identical
            labels = [i for i, texts in PROTOTYPES.items() for _ in texts]
            texts = [rules.strip_accents(t).lower() for i in PROTOTYPES for t in PROTOTYPES[i]]
            self._proto = (embed, embed(texts), labels)
        return self._proto[1], self._proto[2]

    def similarities(self, text: str, embed: Embed) -> dict[str, float]:
        """Per intent, the mean of the two nearest prototypes' cosine similarities."""
        matrix, labels = self._prototypes(embed)
        sims = matrix @ embed([text])[0]
        out: dict[str, list[float]] = {}
        for label, s in zip(labels, sims, strict=True):
            out.setdefault(label, []).append(float(s))
        return {k: float(np.mean(sorted(v)[-2:])) for k, v in out.items()}

    # -- the fast path -----------------------------------------------------------------

    def decide(self, text: str, attachments: Sequence[Attachment | str] = (), *, transcript: str | None = None,
               embed: Embed | None = None) -> Plan:
        """A plan from rules and embeddings alone. ``transcript``: what attached audio says."""
        t0 = time.perf_counter()
        atts = [a if isinstance(a, Attachment) else detect(a) for a in attachments]
        kinds = [a.kind for a in atts]
        embed = embed or (self.embedder if self.use_embeddings else None)
        t = rules.prepare(text or "")
        if "audio" in kinds:
            plan = self._audio(t, kinds, transcript, embed)
        elif "video" in kinds:
            plan = self._attached(t, "video", "vision", ["vision.video"], "a video is attached")
        elif "image" in kinds:
            intent, tools = rules.vision_tool(t.clauses[0])
            plan = self._attached(t, "image", intent, tools.split("+"), "an image is attached")
        elif "document" in kinds:
            plan = self._document(t)
        else:
            plan = self._text(t, embed)
        plan.seconds = plan.decide_s = time.perf_counter() - t0
        return plan

    def _text(self, t: rules.Text, embed: Embed | None, prefix: str = "") -> Plan:
        first = t.clauses[0]
        scores = rules.score(t, first)
        cand = {i: scores[i] for i in TEXT_INTENTS}
        ranked = sorted(cand.items(), key=lambda kv: -kv[1])
        decided_by = "rules"
        why = ""
        if embed is not None and not (ranked[0][1] >= DECISIVE and ranked[0][1] - ranked[1][1] >= DECISIVE_MARGIN):
            sims = self.similarities(first, embed)
            for i in cand:
                cand[i] += EMBED_WEIGHT * sims.get(i, 0.0)
            ranked = sorted(cand.items(), key=lambda kv: -kv[1])
            decided_by = "embedding"
            why = f", nearest prototypes {max(sims, key=sims.get)} ({max(sims.values()):.2f})"
        intent = ranked[0][0]
        confidence = _softmax_top(list(cand.values()))
        steps = self._steps_for(intent, t, first)
        steps = self._follow_ups(t, intent, steps)
        reason = (f"{prefix}text request; {intent} by {decided_by} (score {ranked[0][1]:.1f} vs "
                  f"{ranked[1][0]} {ranked[1][1]:.1f}{why})")
        plan = _plan(intent, steps, reason, confidence, "text", decided_by)
        plan.alternatives = [i for i, _ in ranked[1:3]]
        return plan

    def _steps_for(self, intent: str, t: rules.Text, clause: str) -> list[Step]:
        if intent == "code":
            tool = rules.code_tool(t)
            return [_step(1, tool, text="{request}", file=t.path)]
        if intent == "memory":
            tool = rules.memory_tool(clause)
            return [_step(1, tool, text="{request}")]
        if intent == "research":
            if t.url:
                url = t.url if re.match(r"https?://", t.url) else f"https://{t.url}"
                return [_step(1, "browser.open", url=url.rstrip(".,;)"), text="{request}")]
            return [_step(1, "browser.research", text="{request}")]
        if intent == "pc_control":
            tool = rules.pc_tool(clause)
            return [_step(1, tool, **_pc_args(tool, t, clause))]
        if intent == "speak":
            return [_step(1, "voice.speak", text=_payload(t))]
        return [_step(1, INTENT_TOOL.get(intent, "assistant.chat"), text="{request}")]

    def _follow_ups(self, t: rules.Text, intent: str, steps: list[Step]) -> list[Step]:
        """Second actions: "... and read it aloud", "... and remember them", "open X and type Y"."""
        for clause in t.clauses[1:]:
            last = steps[-1].tool
            n = len(steps)
            if last in IMAGE_PRODUCERS and rules.wants_description(clause):
                steps.append(_step(len(steps) + 1, "vision.describe", file=f"{{s{len(steps)}.file}}",
                                   text="Describe this image."))
            if rules.wants_speech(clause):
                steps.append(_step(len(steps) + 1, "voice.speak", text=f"{{s{len(steps)}.text}}"))
                continue
            if len(steps) > n:
                continue
            if rules.wants_memory(clause) and intent != "memory":
                steps.append(_step(len(steps) + 1, "memory.remember", text=f"{{s{len(steps)}.text}}"))
            elif rules.wants_translation(clause) or (rules.wants_summary(clause) and last == "voice.transcribe"):
                steps.append(_step(len(steps) + 1, "assistant.chat",
                                   text=f"{clause}\n\n{{s{len(steps)}.text}}"))
            elif last.startswith("system."):
                tool = rules.pc_tool(clause)
                if tool == "system.open_app" and re.match(r"(?:type|write|escribe|teclea|tape|tippe)\b", clause):
                    tool = "system.type"
                if tool != "system.open_app" or re.match(rf"{rules.OPEN}\b", clause):
                    steps.append(_step(len(steps) + 1, tool, **_pc_args(tool, t, clause)))
            else:
                sc = rules.score(t, clause)
                extra = max(("imagegen", "videogen", "code"), key=lambda i: sc[i])
                if sc[extra] >= rules.RULES[0][1] and extra != intent:
                    steps.append(_step(len(steps) + 1, INTENT_TOOL.get(extra, "coder.generate"),
                                       text=clause))
        return steps

    def _attached(self, t: rules.Text, kind: str, intent: str, tools: list[str], why: str) -> Plan:
        steps: list[Step] = []
        for tool in tools:
            if tool == "coder.generate":
                steps.append(_step(len(steps) + 1, tool, text="{request}\n\nThe attached image shows:\n{s1.text}"))
            elif tool == "vision.describe" and len(tools) > 1:
                steps.append(_step(len(steps) + 1, tool, file="{attachment0}",
                                   text="Describe this image in detail: layout, elements, text, colours."))
            else:
                steps.append(_step(len(steps) + 1, tool, file="{attachment0}", text="{request}"))
        if intent != "speak" and rules.wants_speech(t.clauses[0]) and len(t.clauses) == 1:
            steps.append(_step(len(steps) + 1, "voice.speak", text=f"{{s{len(steps)}.text}}"))
        steps = self._follow_ups(t, intent, steps)
        reason = f"{why}; {' -> '.join(s.tool for s in steps)} from the request's wording"
        return _plan(intent, steps, reason, 0.9, kind, "rules")

    def _document(self, t: rules.Text) -> Plan:
        steps = [_step(1, "vision.ocr", file="{attachment0}", text="Extract all the text.")]
        if t.head and not re.search(r"\b(?:extract|copy|ocr|text|texto)\b", t.head):
            steps.append(_step(2, "assistant.chat", text="{request}\n\nDocument text:\n{s1.text}"))
        return _plan("vision", steps, "a document is attached: its text is read first", 0.75, "document", "rules")

    def _audio(self, t: rules.Text, kinds: list[str], transcript: str | None, embed: Embed | None) -> Plan:
        steps = [_step(1, "voice.transcribe", file="{attachment0}")]
        if t.original:
            # Typed text sent with audio asks about the audio: transcribe, then what it asks.
            plan = _plan("transcribe", steps, "audio is attached with typed instructions about it", 0.9, "audio",
                         "rules")
            plan.steps = self._follow_ups(rules.prepare("transcribe it and " + t.original), "transcribe", steps)
            return plan
        if transcript is None:
            plan = _plan("transcribe", steps, "audio with no text: transcribe it, then route what it says "
                         "(no transcriber was available while routing)", 0.6, "audio", "rules")
            plan.then_route = True
            return plan
        spoken = rules.prepare(transcript)
        if not spoken.original or not _is_request(spoken):
            return _plan("transcribe", steps, "audio with no text; what it says is not a request: "
                         "transcribe it", 0.8, "audio", "rules")
        inner = self._text(spoken, embed, prefix="spoken request; ")
        rest = _rebase_request(inner.steps)
        plan = _plan(inner.intent, steps + rest, inner.reason, inner.confidence, "audio", inner.decided_by)
        plan.alternatives = inner.alternatives
        return plan


# --- helpers -------------------------------------------------------------------------


def _step(n: int, tool: str, **args: Any) -> Step:
    return Step(id=f"s{n}", tool=tool, args={k: v for k, v in args.items() if v is not None})


def _plan(intent: str, steps: list[Step], reason: str, confidence: float, input_type: str, by: str) -> Plan:
    return Plan(intent=intent, steps=steps, reason=reason, confidence=round(confidence, 3),
                input_type=input_type, decided_by=by)


def _rebase_request(steps: list[Step]) -> list[Step]:
    """Steps routed from a transcript: ``{request}`` becomes the transcript, ids shift by one."""
    out = []
    for s in steps:
        n = int(s.id[1:]) + 1
        args = {}
        for k, v in s.args.items():
            if isinstance(v, str):
                v = re.sub(r"\{s(\d+)\.", lambda m: f"{{s{int(m.group(1)) + 1}.", v).replace("{request}",
                                                                                            "{s1.text}")
            args[k] = v
        out.append(Step(id=f"s{n}", tool=s.tool, args=args, after=["s1"]))
    return out


def _softmax_top(values: list[float]) -> float:
    m = max(values)
    exps = [math.exp(v - m) for v in values]
    return max(exps) / sum(exps)


def _is_request(t: rules.Text) -> bool:
    """Does a transcript ask for something (vs. a recording to be written down)?"""
    words = t.norm.split()
    if len(words) > 40:
        return False
    scores = rules.score(t)
    best = max(v for k, v in scores.items() if k != "chat")
    return best >= 2.0 or bool(re.search(rules.QUESTION, t.norm)) or t.norm.endswith("?") or bool(
        re.match(r"(?:please |can you |could you |)(?:tell|give|show|explain|write|make|create|find|open|play|"
                 r"set|send|call|remind|dime|dame|haz|pon|abre|busca|escribe|crea|explica)\b", t.norm))


def _payload(t: rules.Text) -> str:
    """The words to speak or type: quoted text, else what follows the colon, else the request."""
    if t.quotes:
        return " ".join(t.quotes)
    m = re.search(r":\s*(.+)$", t.original, re.S)
    if m:
        return m.group(1).strip()
    m = re.search(r"(?i)\b(?:say|saying|speak|read|di|lee)\b\s+(.+)$", t.original)
    return m.group(1).strip() if m else t.original


def _pc_args(tool: str, t: rules.Text, clause: str) -> dict[str, Any]:
    if tool == "system.click":
        m = re.search(r"(-?\d+)\s*,\s*(-?\d+)", t.original)
        args: dict[str, Any] = {"x": int(m.group(1)), "y": int(m.group(2))} if m else {"text": "{request}"}
        if re.search(r"double", clause):
            args["clicks"] = 2
        if re.search(r"right", clause):
            args["button"] = "right"
        return args
    if tool == "system.hotkey":
        m = re.search(rf"({rules.KEYS}(?:\s*\+\s*\w+)*)", clause)
        keys = m.group(1) if m else clause
        return {"keys": re.sub(r"\s+", "", keys).lower()}
    if tool == "system.type":
        quotes = [q for q in t.quotes]
        text = quotes[-1] if quotes else _payload(t)
        return {"text": text}
    if tool == "system.open_app":
        m = re.search(rf"\b{rules.OPEN}\b\s+(?:the |my |el |la |mi )?(?:app |application |aplicacion )?(.+)$",
                      clause)
        name = m.group(1) if m else clause
        name = re.sub(r"\b(?:app|application|program|aplicacion|programa|for me|please|por favor)\b", "", name)
        # Recover the user's capitalisation from the original text.
        found = re.search(re.escape(name.strip(" .!")), rules.strip_accents(t.original), re.I)
        return {"app": (t.original[found.start():found.end()] if found else name).strip(" .!")}
    if tool == "system.screenshot":
        return {}
    return {"text": "{request}"}
