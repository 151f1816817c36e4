"""``[plugin.cognition]`` settings: which stages run, and each one's knobs.

    [plugin.cognition]
    stages = { emotion = true, reasoning = true, anti_hallucination = true, personality = true }

    [plugin.cognition.personality]
    openness = 0.7
    conscientiousness = 0.7
    extraversion = 0.5
    agreeableness = 0.8
    neuroticism = 0.2

A stage can also be turned off with ``[plugin.<stage name>] enabled = false``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]

STAGE_NAMES = ("emotion", "personality", "anti_hallucination", "reasoning")


class EmotionSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    tone_threshold: Unit = 0.45  # intensity above which the tone instruction is added


class ReasoningSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    chain_of_thought_at: Unit = 0.35  # difficulty from which the model thinks step by step
    self_consistency_at: Unit = 0.65  # difficulty from which several answers vote
    samples: Annotated[int, msgspec.Meta(ge=2, le=8)] = 5


class AntiHallucinationSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    samples: Annotated[int, msgspec.Meta(ge=2, le=8)] = 3  # answers compared for a factual question
    threshold: Unit = 0.5  # confidence under which the answer is marked uncertain
    check: str = "factual"  # "factual" (questions of fact) or "always" (every coordinator answer)


class PersonalitySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    openness: Unit = 0.7
    conscientiousness: Unit = 0.7
    extraversion: Unit = 0.5
    agreeableness: Unit = 0.8
    neuroticism: Unit = 0.2


class CognitionSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    stages: dict[str, bool] = {}
    emotion: EmotionSettings = msgspec.field(default_factory=EmotionSettings)
    reasoning: ReasoningSettings = msgspec.field(default_factory=ReasoningSettings)
    anti_hallucination: AntiHallucinationSettings = msgspec.field(default_factory=AntiHallucinationSettings)
    personality: PersonalitySettings = msgspec.field(default_factory=PersonalitySettings)

    def __post_init__(self) -> None:
        unknown = set(self.stages) - set(STAGE_NAMES)
        if unknown:
            raise ValueError(f"unknown cognition stage(s) {sorted(unknown)}; known: {', '.join(STAGE_NAMES)}")
        if self.anti_hallucination.check not in ("factual", "always"):
            raise ValueError("anti_hallucination.check must be \"factual\" or \"always\"")

    def enabled(self, stage: str) -> bool:
        return self.stages.get(stage, True)
