"""Events the cognition stages publish (under the turn's correlation id)."""

from __future__ import annotations

from core.events import Event


class EmotionDetected(Event, frozen=True, kw_only=True):
    dominant: str
    intensity: float
    pleasure: float
    arousal: float
    dominance: float
    language: str = "en"


class StrategyChosen(Event, frozen=True, kw_only=True):
    """The reasoning stage's choice: direct, chain_of_thought or self_consistency."""

    strategy: str
    difficulty: float
    samples: int
    reasons: list[str] = []


class MajorityChosen(Event, frozen=True, kw_only=True):
    """Self-consistency: which answer the most samples agreed on."""

    votes: int
    samples: int
    clusters: int


class ConfidenceAssessed(Event, frozen=True, kw_only=True):
    confidence: float
    pairwise: float
    majority: float
    samples: int
    uncertain: bool


class StyleChosen(Event, frozen=True, kw_only=True):
    context: str
    traits: dict[str, float] = {}
