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
    # Intensity from which the reply's tone follows the emotion; None: the threshold calibrated
    # with the model (cross-validated on its training set, see docs/cognition.md).
    tone_threshold: Unit | None = None
    # Judge with the sentence embedding too (the pool's embed model). Off by default: it costs
    # an embed call per turn (measured 2 s median through the pool on the loaded shared
    # machine, against 0.25 ms for the text model) and MiniLM is English-only (see
    # docs/cognition.md for both models' figures).
    use_embeddings: bool = False


STRATEGIES = ("direct", "chain_of_thought", "reflect", "self_consistency")


#: bench/reasoning.py's table with the packaged SmolLM2-135M (docs/cognition.md)
#: (all 110 problems, the bench's generations stopped at the final-answer line)
MEASURED_S = {"direct": 6.79, "chain_of_thought": 6.92, "reflect": 36.54, "self_consistency": 16.9}
MEASURED_ACCURACY = {"direct": 0.055, "chain_of_thought": 0.045, "reflect": 0.036, "self_consistency": 0.027}


class ReasoningSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Which strategy a request gets by its predicted difficulty (P(several steps needed)).
    # The defaults come from bench/reasoning.py's table with the packaged model; see
    # docs/cognition.md for the figures.
    hard_at: Unit = 0.5  # difficulty from which a request counts as hard
    simple: str = "direct"
    hard: str = "direct"
    samples: Annotated[int, msgspec.Meta(ge=2, le=8)] = 5  # answers that vote under self_consistency
    # A stronger model for hard requests, when one is configured: the role it serves
    # ([models.x] role = "expert"); the plan says which tier answered and its expected cost.
    expert_role: str = "expert"
    reflect_max_tokens: Annotated[int, msgspec.Meta(ge=16, le=4096)] = 256  # the critique's and the revision's
    # Measured seconds per answer with the packaged model (bench/reasoning.py, 19 of the 110
    # problems, shared loaded machine; self_consistency with 3 samples), for the plan's estimate.
    expected_s: dict[str, float] = msgspec.field(default_factory=lambda: dict(MEASURED_S))
    # Measured accuracy per strategy on the same problems (shown with the plan's choice).
    expected_accuracy: dict[str, float] = msgspec.field(default_factory=lambda: dict(MEASURED_ACCURACY))


class AntiHallucinationSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    samples: Annotated[int, msgspec.Meta(ge=2, le=8)] = 3  # answers compared for a factual question
    # Calibrated confidence under which the answer is marked uncertain.
    threshold: Unit = 0.5
    check: str = "factual"  # "factual" (questions of fact) or "always" (every coordinator answer)
    use_embeddings: bool = True  # paraphrase agreement through the pool's embed model when there is one


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
        for which in ("simple", "hard"):
            value = getattr(self.reasoning, which)
            if value not in STRATEGIES:
                raise ValueError(f"reasoning.{which} = {value!r} is not a strategy; "
                                 f"choose one of {', '.join(STRATEGIES)}")

    def enabled(self, stage: str) -> bool:
        return self.stages.get(stage, True)
