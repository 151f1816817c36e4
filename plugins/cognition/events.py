"""Events the cognition stages publish (under the turn's correlation id)."""

from __future__ import annotations

from core.events import Event


class EmotionDetected(Event, frozen=True, kw_only=True):
    """The classifier's reading: ``dominant`` (an emotion or neutral), its probability
    (``confidence``), intensity, PAD, and whether the reply's tone changed (intensity at
    least ``tone_threshold``)."""

    dominant: str
    intensity: float
    confidence: float = 0.0
    tone_changed: bool = False
    tone_threshold: float = 0.0
    pleasure: float
    arousal: float
    dominance: float
    language: str = "en"


class StrategyChosen(Event, frozen=True, kw_only=True):
    """The reasoning stage's choice (direct, chain_of_thought, reflect, self_consistency) by
    predicted ``difficulty``; ``tier`` is "coordinator" or "expert", ``expected_s`` the
    measured seconds per answer for the strategy and ``expected_accuracy`` its measured
    accuracy on multi-step word problems (bench/reasoning.py with the packaged model; None
    when not measured)."""

    strategy: str
    difficulty: float
    samples: int
    reasons: list[str] = []
    tier: str = "coordinator"
    model: str | None = None
    expected_s: float | None = None
    expected_accuracy: float | None = None


class MajorityChosen(Event, frozen=True, kw_only=True):
    """Self-consistency: which answer the most samples agreed on; ``prompt_evaluations`` is 1
    when the samples were drawn together on one evaluation of the prompt (``Chat.sample``)."""

    votes: int
    samples: int
    clusters: int
    prompt_evaluations: int | None = None
    sample_s: float | None = None  # seconds the samples took, all together


class ConfidenceAssessed(Event, frozen=True, kw_only=True):
    """Anti-hallucination: the calibrated ``confidence`` that the answer is right, from the
    samples' agreement (``semantic``: with embeddings), and memory facts it contradicts.
    ``calibrated`` says whether fitted coefficients turned agreement into the confidence;
    ``calibration_auroc`` is how well they separated right from wrong answers on the
    held-out self-check questions (bench/selfcheck.py), ``prompt_evaluations`` and
    ``sample_s`` how the samples were drawn (1: together, on one prompt evaluation)."""

    confidence: float
    pairwise: float
    majority: float
    samples: int
    uncertain: bool
    support: float = 1.0
    semantic: bool = False
    contradicts: int = 0
    threshold: float = 0.5
    calibrated: bool = False
    calibration_auroc: float | None = None
    prompt_evaluations: int | None = None
    sample_s: float | None = None
    #: the model's token log-probabilities for the answer given (mean, least likely token;
    #: None when the backend gave none) and whether the calibration used them
    mean_logprob: float | None = None
    min_logprob: float | None = None
    logprobs_used: bool = False


class StyleChosen(Event, frozen=True, kw_only=True):
    context: str
    traits: dict[str, float] = {}


class ReflectionDone(Event, frozen=True, kw_only=True):
    """Self-reflection: the draft was critiqued, and revised or kept."""

    revised: bool
