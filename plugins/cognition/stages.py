"""The cognition stages. Order (``before`` ascending, ``after`` descending)::

    memory 10 -> emotion 20 -> personality 30 -> anti_hallucination 40 -> reasoning 50
    answer
    reasoning 50 (majority) -> anti_hallucination 40 (confidence) -> ... -> memory 10 (store)

so the majority answer is chosen before its confidence is judged, and memory stores the
answer as finally marked.
"""

from __future__ import annotations

import re
from typing import Any

from . import agreement, confidence, difficulty, emotion, strategies
from .events import (
    ConfidenceAssessed,
    EmotionDetected,
    MajorityChosen,
    ReflectionDone,
    StrategyChosen,
    StyleChosen,
)
from .settings import CognitionSettings

ORDERS = {"emotion": 20, "personality": 30, "anti_hallucination": 40, "reasoning": 50}


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def coordinator_answers(turn: Any) -> bool:
    """Whether the coordinator itself writes the answer (only then do samples make sense)."""
    plan = turn.plan
    if plan is None:
        return True
    names = plan.tool_names() if hasattr(plan, "tool_names") else [s.tool for s in plan.steps]
    return "assistant.chat" in names


def _language(turn: Any) -> str:
    return (turn.metadata.get("emotion") or {}).get("language") or emotion.language(turn.transcript)


def _pool_model(turn: Any, role: str) -> str | None:
    """The pool's model for ``role``, or None (no app, or nothing serves it)."""
    pool = getattr(turn.app, "pool", None)
    if pool is None:
        return None
    try:
        return pool.model_for(role)
    except Exception:
        return None


# --- emotion ------------------------------------------------------------------------------


class EmotionStage:
    name = "emotion"

    def __init__(self, settings: CognitionSettings) -> None:
        self.settings = settings

    async def before(self, turn: Any) -> None:
        vector = None
        if self.settings.emotion.use_embeddings and turn.transcript.strip():
            try:
                embed = await embedder(turn)
                if embed is not None:
                    await embed.prepare([turn.transcript])  # type: ignore[attr-defined]
                    vector = embed([turn.transcript])[0]
            except Exception:  # no embedding model: the text-only model judges
                vector = None
        result = emotion.detect(turn.transcript, vector=vector)
        threshold = self.settings.emotion.tone_threshold
        if threshold is None:
            threshold = result["tone_threshold"]
        line = emotion.tone_instruction(result, threshold)
        result["tone_changed"] = line is not None
        turn.metadata["emotion"] = result
        if line:
            turn.instructions.append(line)
        if result["language"] == "es":
            turn.instructions.append("The user writes in Spanish: answer in Spanish.")
        pad = result["pad"]
        await turn.emit(EmotionDetected(dominant=result["dominant"], intensity=result["intensity"],
                                        confidence=result["confidence"], tone_changed=line is not None,
                                        tone_threshold=threshold, pleasure=pad["pleasure"], arousal=pad["arousal"],
                                        dominance=pad["dominance"], language=result["language"], source="cognition"))


# --- reasoning ----------------------------------------------------------------------------


class ReasoningStage:
    """Strategy by predicted difficulty (``difficulty.predict``), the expert tier for hard
    requests when one is configured, the majority of samples, and self-reflection."""

    name = "reasoning"

    def __init__(self, settings: CognitionSettings) -> None:
        self.settings = settings.reasoning

    def choose(self, text: str) -> tuple[str, float]:
        d = difficulty.predict(text)
        return (self.settings.hard if d >= self.settings.hard_at else self.settings.simple), d

    async def before(self, turn: Any) -> None:
        strategy, d = self.choose(turn.transcript)
        hard = d >= self.settings.hard_at
        reasons = [f"predicted difficulty {d:.2f} ({'hard' if hard else 'simple'}, threshold "
                   f"{self.settings.hard_at})"]
        if not coordinator_answers(turn):
            strategy = "direct"
            reasons.append("the plan's tools answer, not the coordinator")
        tier, model = "coordinator", _pool_model(turn, "coordinator")
        if hard and coordinator_answers(turn):
            expert = _pool_model(turn, self.settings.expert_role)
            if expert is not None:
                tier, model = "expert", expert
                reasons.append(f"hard request: the {self.settings.expert_role} model {expert} answers")
        if strategy == "self_consistency":
            turn.samples = max(turn.samples, self.settings.samples)
        turn.strategy = "chain_of_thought" if strategy in ("self_consistency", "reflect") else strategy
        calls = {"direct": 1, "chain_of_thought": 1, "reflect": 3, "self_consistency": self.settings.samples}[strategy]
        per_call = self.settings.expected_s.get(strategy)
        expected = round(per_call, 2) if per_call is not None else None
        accuracy = self.settings.expected_accuracy.get(strategy)
        turn.metadata["reasoning"] = {"strategy": strategy, "difficulty": d, "reasons": reasons,
                                      "samples": turn.samples, "tier": tier, "model": model,
                                      "calls": calls, "expected_s": expected, "expected_accuracy": accuracy}
        await turn.emit(StrategyChosen(strategy=strategy, difficulty=d, samples=turn.samples, reasons=reasons,
                                       tier=tier, model=model, expected_s=expected, expected_accuracy=accuracy,
                                       source="cognition"))

    async def after(self, turn: Any) -> None:
        info = turn.metadata.setdefault("reasoning", {})
        cands = [c for c in turn.candidates if c and c.strip()]
        if len(cands) >= 2 and info.get("strategy") == "self_consistency":
            groups = agreement.clusters(cands, question=turn.transcript)
            best = groups[0]
            turn.answer = cands[best[0]]
            info.update({"votes": len(best), "of": len(cands), "clusters": len(groups)})
            drawn = turn.metadata.get("samples") or {}
            await turn.emit(MajorityChosen(votes=len(best), samples=len(cands), clusters=len(groups),
                                           prompt_evaluations=drawn.get("prompt_evaluations"),
                                           sample_s=drawn.get("seconds"), source="cognition"))
        if info.get("strategy") == "reflect" and turn.answer and turn._generate is not None:
            model = info.get("model")

            async def generate(messages: Any, **kw: Any) -> str:  # the same tier reviews its own draft
                if model:
                    kw["model"] = model
                return await turn.generate(messages, **kw)

            out = await strategies.critique_and_revise(generate, turn.transcript, turn.answer,
                                                       max_tokens=self.settings.reflect_max_tokens)
            changed = out["answer"] != turn.answer
            info.update({"critique": out["critique"], "revised": changed})
            turn.answer = out["answer"]
            await turn.emit(ReflectionDone(revised=changed, source="cognition"))


# --- anti-hallucination -------------------------------------------------------------------

_FACTUAL = re.compile(r"^\s*(who|what|when|where|which|how many|how much|how old|how far|how long|is|are|was|"
                      r"were|did|does|do|name|list|qui[eé]n(es)?|qu[eé]|cu[aá]ndo|d[oó]nde|cu[aá]l(es)?|"
                      r"cu[aá]nt[oa]s?|es|son|fue|era)\b", re.IGNORECASE)
_OPINION = re.compile(r"\b(you think|your opinion|should i|recommend|suggest|write|draw|create|tell me a story|"
                      r"poem|joke|crees|opinas|deber[ií]a|recomienda|escribe|dibuja|cuento|poema|chiste)\b",
                      re.IGNORECASE)
_MEMORY_FACT = re.compile(r"^Memory \((?:fact about the user|the user said)[^)]*\): (.+)$", re.DOTALL)


def is_factual(text: str) -> bool:
    """A question of fact (not a request for an opinion or for creative writing)."""
    stripped = text.strip().lstrip("¿¡")
    return bool(_FACTUAL.search(stripped)) and not _OPINION.search(stripped)


async def embedder(turn: Any) -> agreement.Embed | None:
    """A function that embeds texts with the pool's embed model, or None when there is none."""
    name = _pool_model(turn, "embed")
    if name is None:
        return None
    from core.capabilities import Embed

    pool = turn.app.pool
    cache: dict[str, list[float]] = {}

    async def embed_all(texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            async with pool.use(name, Embed, reason="anti-hallucination") as handle:
                for t, v in zip(todo, await handle.embed(todo), strict=True):
                    cache[t] = v

    def embed(texts: list[str]) -> list[list[float]]:
        return [cache[t] for t in texts]

    embed.prepare = embed_all  # type: ignore[attr-defined]
    return embed


class AntiHallucinationStage:
    name = "anti_hallucination"

    def __init__(self, settings: CognitionSettings) -> None:
        self.settings = settings.anti_hallucination

    def wants_check(self, turn: Any) -> bool:
        if not coordinator_answers(turn):
            return False
        return self.settings.check == "always" or is_factual(turn.transcript)

    async def before(self, turn: Any) -> None:
        if self.wants_check(turn):
            turn.samples = max(turn.samples, self.settings.samples)
            turn.metadata["anti_hallucination"] = {"checked": True, "samples": turn.samples}

    async def after(self, turn: Any) -> None:
        info = turn.metadata.setdefault("anti_hallucination", {})
        contradicted = self.contradictions(turn)
        if contradicted:
            info["contradicts"] = contradicted
        cands = [c for c in turn.candidates if c and c.strip()]
        if (len(cands) < 2 and not contradicted) or not turn.answer:
            return
        embed = None
        if self.settings.use_embeddings and len(cands) >= 2:
            try:
                embed = await embedder(turn)
                if embed is not None:
                    await embed.prepare([agreement.Claims(c).final or c for c in cands])  # type: ignore[attr-defined]
            except Exception as exc:  # no embeddings: the rules still judge numbers and entities
                info["embeddings"] = f"unavailable ({exc})"
                embed = None
        main = cands.index(turn.answer) if turn.answer in cands else 0
        score = agreement.agreement(cands, embed, main=main, question=turn.transcript) if len(cands) >= 2 else \
            {"pairwise": 1.0, "majority": 1.0, "support": 1.0, "clusters": 1.0, "confidence": 1.0, "samples": 1}
        drawn = turn.metadata.get("samples") or {}
        model_lp = confidence.logprob_features(self.answer_logprobs(turn, drawn.get("logprobs")))
        score = {**score, **model_lp}
        conf = confidence.calibrated(score)
        params = confidence.calibration()
        if contradicted:
            conf = min(conf, 0.2)
        turn.confidence = conf
        uncertain = conf < self.settings.threshold
        info.update(score, calibrated=conf, uncertain=uncertain, semantic=embed is not None,
                    calibration_auroc=(params or {}).get("heldout_auroc"),
                    prompt_evaluations=drawn.get("prompt_evaluations"))
        if uncertain:
            turn.uncertain = True
            turn.answer = self.mark(turn.answer, conf, _language(turn), contradicted)
            turn.metadata["uncertainty_marked"] = True
        await turn.emit(ConfidenceAssessed(confidence=conf, pairwise=score["pairwise"], majority=score["majority"],
                                           support=score["support"], samples=len(cands), uncertain=uncertain,
                                           semantic=embed is not None, contradicts=len(contradicted),
                                           threshold=self.settings.threshold, calibrated=params is not None,
                                           calibration_auroc=(params or {}).get("heldout_auroc"),
                                           prompt_evaluations=drawn.get("prompt_evaluations"),
                                           sample_s=drawn.get("seconds"),
                                           mean_logprob=_rounded(model_lp.get("mean_logprob")),
                                           min_logprob=_rounded(model_lp.get("min_logprob")),
                                           logprobs_used=bool(model_lp) and confidence.uses_logprobs(params),
                                           source="cognition"))

    @staticmethod
    def answer_logprobs(turn: Any, logprobs: list[list[float] | None] | None) -> list[float] | None:
        """The token log-probabilities of the sample given as the answer (None when the
        backend gave none, or the answer is not one of the samples as drawn)."""
        if not logprobs:
            return None
        drawn = [(c or "").strip() for c in turn.candidates]
        answer = (turn.answer or "").strip()
        i = drawn.index(answer) if answer in drawn else -1
        return logprobs[i] if 0 <= i < len(logprobs) else None

    @staticmethod
    def contradictions(turn: Any) -> list[str]:
        """Remembered facts (in ``turn.context``) that the answer contradicts."""
        if not turn.answer:
            return []
        out = []
        for line in turn.context:
            m = _MEMORY_FACT.match(line)
            if m and agreement.contradicts(turn.answer, m.group(1)):
                out.append(m.group(1))
        return out

    @staticmethod
    def mark(answer: str, confidence: float, language: str = "en", contradicted: list[str] | None = None) -> str:
        """Say it is uncertain instead of stating it as fact."""
        if contradicted:
            if language == "es":
                return (f"Ojo: esto contradice lo que tengo guardado (\"{contradicted[0]}\"); "
                        f"compruébalo. {answer}")
            return f"Careful: this contradicts what I have stored (\"{contradicted[0]}\"); please check. {answer}"
        if language == "es":
            return (f"No estoy seguro de esto (mis respuestas no coincidían; confianza {confidence:.0%}). "
                    f"Lo que creo, sin poder confirmarlo: {answer}")
        return (f"I'm not sure about this (my answers disagreed; confidence {confidence:.0%}). "
                f"My best guess, which you should verify: {answer}")


# --- personality --------------------------------------------------------------------------

_WORK = re.compile(r"\b(meeting|deadline|report|client|customer|project|manager|boss|email|invoice|budget|"
                   r"presentation|office|colleague|task|sprint|code|bug|deploy|reuni[oó]n|plazo|informe|cliente|"
                   r"proyecto|jefe|jefa|correo|factura|presupuesto|presentaci[oó]n|oficina|compa[nñ]ero|tarea|"
                   r"trabajo)\b", re.IGNORECASE)
_CASUAL = re.compile(r"\b(hey|hi|hello|lol|haha|weekend|movie|film|game|party|fun|chill|bored|jaja|hola|"
                     r"finde|fin de semana|pel[ií]cula|juego|fiesta|aburrid[oa])\b|😂|😄|🙂", re.IGNORECASE)

TRAIT_LINES = {
    "openness": ("Offer creative ideas and unusual angles where they help.",
                 "Stick to conventional, proven answers; avoid speculation."),
    "conscientiousness": ("Be precise and organised: structure the answer and check details.",
                          "Keep it loose and brief; skip the formalities."),
    "extraversion": ("Be lively and warm, show enthusiasm.",
                     "Be calm and concise; do not chat more than needed."),
    "agreeableness": ("Be kind and cooperative; acknowledge the user's point of view.",
                      "Be frank and direct; disagree plainly when the user is wrong."),
    "neuroticism": ("Point out risks and what could go wrong.",
                    "Stay calm and confident; do not dramatise."),
}
CONTEXT_SHIFT = {
    "work": {"conscientiousness": 0.2, "extraversion": -0.2, "openness": -0.1},
    "casual": {"extraversion": 0.2, "openness": 0.1, "conscientiousness": -0.15},
    "emotional": {"agreeableness": 0.2, "neuroticism": -0.2, "extraversion": -0.1},
    "neutral": {},
}
CONTEXT_LINE = {
    "work": "Context: work. Be professional and to the point.",
    "casual": "Context: casual chat. Be relaxed and friendly; light humour is fine.",
    "emotional": "Context: the user is emotional. Put empathy first, no jokes, keep it gentle.",
    "neutral": None,
}


def detect_context(text: str, emotion_intensity: float = 0.0, emotional: bool | None = None) -> str:
    """work / casual / emotional / neutral. ``emotional``: whether the emotion stage changed
    the reply's tone (its calibrated threshold); without it, an intensity of 0.6 decides."""
    if emotional if emotional is not None else emotion_intensity >= 0.6:
        return "emotional"
    work, casual = len(_WORK.findall(text)), len(_CASUAL.findall(text))
    if work > casual:
        return "work"
    if casual:
        return "casual"
    return "neutral"


_NUMBER = re.compile(r"\d|\b(times|plus|minus|divided|twice|half|double|veces|m[aá]s|menos)\b", re.IGNORECASE)
#: the traits that set a register (ideas, liveliness, warmth): for open-ended requests only
REGISTER_TRAITS = ("openness", "extraversion", "agreeableness")


def open_ended(text: str) -> bool:
    """Whether ``text`` asks for something open-ended (ideas, advice, writing) rather than a
    fact, a calculation or a short follow-up ("And times 3?"), which want the answer and no
    particular register."""
    stripped = text.strip()
    if _OPINION.search(stripped):
        return True
    if is_factual(stripped) or _NUMBER.search(stripped):
        return False
    return len(stripped.split()) > 6


def style(traits: dict[str, float], context: str, open_request: bool = True) -> tuple[list[str], dict[str, float]]:
    """Style instructions for Big Five ``traits`` adapted to ``context``, and the effective
    traits. A request that is not open-ended (``open_request`` False) gets no register
    lines (creative ideas, enthusiasm, warmth): a small model acts them out on a sum."""
    eff = {t: min(1.0, max(0.0, v + CONTEXT_SHIFT[context].get(t, 0.0))) for t, v in traits.items()}
    lines = []
    line = CONTEXT_LINE[context]
    if line:
        lines.append(line)
    for trait, (high, low) in TRAIT_LINES.items():
        if not open_request and trait in REGISTER_TRAITS:
            continue
        if eff[trait] >= 0.65:
            lines.append(high)
        elif eff[trait] <= 0.35:
            lines.append(low)
    return lines, {k: round(v, 3) for k, v in eff.items()}


class PersonalityStage:
    name = "personality"

    def __init__(self, settings: CognitionSettings) -> None:
        p = settings.personality
        self.traits = {"openness": p.openness, "conscientiousness": p.conscientiousness,
                       "extraversion": p.extraversion, "agreeableness": p.agreeableness,
                       "neuroticism": p.neuroticism}

    async def before(self, turn: Any) -> None:
        emo = turn.metadata.get("emotion") or {}
        # Emotional only when the emotion stage changed the tone (above its calibrated threshold).
        context = detect_context(turn.transcript, float(emo.get("intensity", 0.0)), emo.get("tone_changed"))
        open_request = open_ended(turn.transcript)
        lines, eff = style(self.traits, context, open_request)
        turn.instructions.extend(lines)
        turn.metadata["personality"] = {"context": context, "traits": eff, "instructions": lines,
                                        "open_ended": open_request}
        await turn.emit(StyleChosen(context=context, traits=eff, source="cognition"))


STAGES = {"emotion": EmotionStage, "personality": PersonalityStage, "anti_hallucination": AntiHallucinationStage,
          "reasoning": ReasoningStage}
