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

from . import agreement, emotion
from .events import ConfidenceAssessed, EmotionDetected, MajorityChosen, StrategyChosen, StyleChosen
from .settings import CognitionSettings

ORDERS = {"emotion": 20, "personality": 30, "anti_hallucination": 40, "reasoning": 50}


def coordinator_answers(turn: Any) -> bool:
    """Whether the coordinator itself writes the answer (only then do samples make sense)."""
    plan = turn.plan
    if plan is None:
        return True
    names = plan.tool_names() if hasattr(plan, "tool_names") else [s.tool for s in plan.steps]
    return "assistant.chat" in names


def _language(turn: Any) -> str:
    return (turn.metadata.get("emotion") or {}).get("language") or emotion.detect(turn.transcript)["language"]


# --- emotion ------------------------------------------------------------------------------


class EmotionStage:
    name = "emotion"

    def __init__(self, settings: CognitionSettings) -> None:
        self.settings = settings

    async def before(self, turn: Any) -> None:
        result = emotion.detect(turn.transcript)
        turn.metadata["emotion"] = result
        line = emotion.tone_instruction(result, self.settings.emotion.tone_threshold)
        if line:
            turn.instructions.append(line)
        if result["language"] == "es":
            turn.instructions.append("The user writes in Spanish: answer in Spanish.")
        pad = result["pad"]
        await turn.emit(EmotionDetected(dominant=result["dominant"], intensity=result["intensity"],
                                        pleasure=pad["pleasure"], arousal=pad["arousal"],
                                        dominance=pad["dominance"], language=result["language"], source="cognition"))


# --- reasoning ----------------------------------------------------------------------------

_MATH = re.compile(r"\b(calculate|compute|how many|how much|percent|percentage|sum|multiply|divide|average|"
                   r"equation|solve|calcula\w*|cu[aá]nt[oa]s?|porcentaje|suma|multiplica|divide|promedio|"
                   r"ecuaci[oó]n|resuelve)\b|[-+*/^=×÷]\s*\d", re.IGNORECASE)
_LOGIC = re.compile(r"\b(why|prove|derive|explain|compare|trade-?offs?|pros and cons|implications?|analy[sz]e|"
                    r"evaluate|justify|por qu[eé]|demuestra|explica|compara|analiza|eval[uú]a|justifica|"
                    r"ventajas y desventajas)\b", re.IGNORECASE)
_MULTI = re.compile(r"\b(then|after that|first|second|finally|step|steps|each|both|luego|despu[eé]s|primero|"
                    r"segundo|finalmente|paso|pasos|cada|ambos)\b", re.IGNORECASE)
_PUZZLE = re.compile(r"\b(puzzle|riddle|trick question|brain ?teaser|logic problem|acertijo|adivinanza|"
                     r"problema de l[oó]gica)\b", re.IGNORECASE)
_CODE = re.compile(r"\b(algorithm|complexity|function|recursion|bug|optimi[sz]e|algoritmo|complejidad|"
                   r"funci[oó]n|recursi[oó]n)\b", re.IGNORECASE)
_STEPWISE = re.compile(r"\b(step by step|show your (work|reasoning)|paso a paso|razona)\b", re.IGNORECASE)


def difficulty(text: str) -> tuple[float, list[str]]:
    """0..1 estimate of how much reasoning ``text`` needs, with the reasons."""
    score, reasons = 0.05, []
    words = len(text.split())
    numbers = len(re.findall(r"\d+(?:[.,]\d+)?", text))
    if _MATH.search(text) or numbers >= 3:
        score += 0.3
        reasons.append("arithmetic")
        if numbers >= 2:
            score += 0.1
    if _LOGIC.search(text):
        score += 0.3
        reasons.append("explanation or analysis")
    multi = len(_MULTI.findall(text)) + max(text.count("?") - 1, 0)
    if multi:
        score += min(0.1 * multi, 0.25)
        reasons.append("several steps or questions")
    if _PUZZLE.search(text):
        score += 0.35
        reasons.append("puzzle")
    if _CODE.search(text):
        score += 0.1
        reasons.append("algorithmic")
    if words > 40:
        score += 0.15 if words <= 100 else 0.25
        reasons.append("long request")
    if not reasons:
        reasons.append("short, simple request" if words < 12 else "no reasoning markers")
    return round(min(score, 1.0), 3), reasons


class ReasoningStage:
    name = "reasoning"

    def __init__(self, settings: CognitionSettings) -> None:
        self.settings = settings.reasoning

    def choose(self, text: str) -> tuple[str, float, list[str]]:
        d, reasons = difficulty(text)
        if d >= self.settings.self_consistency_at:
            return "self_consistency", d, reasons
        if d >= self.settings.chain_of_thought_at or _STEPWISE.search(text):
            if _STEPWISE.search(text):
                reasons = [*reasons, "asked for step-by-step reasoning"]
            return "chain_of_thought", d, reasons
        return "direct", d, reasons

    async def before(self, turn: Any) -> None:
        strategy, d, reasons = self.choose(turn.transcript)
        if not coordinator_answers(turn):
            strategy, reasons = "direct", [*reasons, "the plan's tools answer, not the coordinator"]
        if strategy == "self_consistency":
            turn.samples = max(turn.samples, self.settings.samples)
        turn.strategy = "chain_of_thought" if strategy == "self_consistency" else strategy
        turn.metadata["reasoning"] = {"strategy": strategy, "difficulty": d, "reasons": reasons,
                                      "samples": turn.samples}
        await turn.emit(StrategyChosen(strategy=strategy, difficulty=d, samples=turn.samples, reasons=reasons,
                                       source="cognition"))

    async def after(self, turn: Any) -> None:
        cands = [c for c in turn.candidates if c and c.strip()]
        if len(cands) < 2:
            return
        groups = agreement.clusters(cands)
        best = groups[0]
        turn.answer = cands[best[0]]
        info = turn.metadata.setdefault("reasoning", {})
        info.update({"votes": len(best), "of": len(cands), "clusters": len(groups)})
        await turn.emit(MajorityChosen(votes=len(best), samples=len(cands), clusters=len(groups),
                                       source="cognition"))


# --- anti-hallucination -------------------------------------------------------------------

_FACTUAL = re.compile(r"^\s*(who|what|when|where|which|how many|how much|how old|how far|how long|is|are|was|"
                      r"were|did|does|do|name|list|qui[eé]n(es)?|qu[eé]|cu[aá]ndo|d[oó]nde|cu[aá]l(es)?|"
                      r"cu[aá]nt[oa]s?|es|son|fue|era)\b", re.IGNORECASE)
_OPINION = re.compile(r"\b(you think|your opinion|should i|recommend|suggest|write|draw|create|tell me a story|"
                      r"poem|joke|crees|opinas|deber[ií]a|recomienda|escribe|dibuja|cuento|poema|chiste)\b",
                      re.IGNORECASE)


def is_factual(text: str) -> bool:
    """A question of fact (not a request for an opinion or for creative writing)."""
    stripped = text.strip().lstrip("¿¡")
    return bool(_FACTUAL.search(stripped)) and not _OPINION.search(stripped)


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
        cands = [c for c in turn.candidates if c and c.strip()]
        if len(cands) < 2 or not turn.answer:
            return
        score = agreement.agreement(cands)
        conf = score["confidence"]
        turn.confidence = conf
        uncertain = conf < self.settings.threshold
        info = turn.metadata.setdefault("anti_hallucination", {})
        info.update(score, uncertain=uncertain)
        if uncertain:
            turn.uncertain = True
            turn.answer = self.mark(turn.answer, conf, _language(turn))
            turn.metadata["uncertainty_marked"] = True
        await turn.emit(ConfidenceAssessed(confidence=conf, pairwise=score["pairwise"], majority=score["majority"],
                                           samples=len(cands), uncertain=uncertain, source="cognition"))

    @staticmethod
    def mark(answer: str, confidence: float, language: str = "en") -> str:
        """Say it is uncertain instead of stating it as fact."""
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


def detect_context(text: str, emotion_intensity: float = 0.0) -> str:
    if emotion_intensity >= 0.6:
        return "emotional"
    work, casual = len(_WORK.findall(text)), len(_CASUAL.findall(text))
    if work > casual:
        return "work"
    if casual:
        return "casual"
    return "neutral"


def style(traits: dict[str, float], context: str) -> tuple[list[str], dict[str, float]]:
    """Style instructions for Big Five ``traits`` adapted to ``context``, and the effective traits."""
    eff = {t: min(1.0, max(0.0, v + CONTEXT_SHIFT[context].get(t, 0.0))) for t, v in traits.items()}
    lines = []
    line = CONTEXT_LINE[context]
    if line:
        lines.append(line)
    for trait, (high, low) in TRAIT_LINES.items():
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
        intensity = float((turn.metadata.get("emotion") or {}).get("intensity", 0.0))
        context = detect_context(turn.transcript, intensity)
        lines, eff = style(self.traits, context)
        turn.instructions.extend(lines)
        turn.metadata["personality"] = {"context": context, "traits": eff, "instructions": lines}
        await turn.emit(StyleChosen(context=context, traits=eff, source="cognition"))


STAGES = {"emotion": EmotionStage, "personality": PersonalityStage, "anti_hallucination": AntiHallucinationStage,
          "reasoning": ReasoningStage}
