"""Events the assistant publishes: what was decided, and what each step did."""

from __future__ import annotations

from core.events import Event


class PlanReady(Event, frozen=True, kw_only=True):
    """The router chose a plan (not run yet)."""

    plan_id: str
    intent: str
    steps: list[str]
    reason: str
    confidence: float
    decided_by: str = "rules"  # "rules", "embedding", "llm" or "plugin"
    seconds: float = 0.0


class Delegated(Event, frozen=True, kw_only=True):
    """Who does a step: the coordinator itself, or a specialist (tool + model), and why."""

    plan_id: str
    step: str
    tool: str
    model: str | None = None
    direct: bool = False  # the coordinator answers itself
    reason: str = ""


class StepStarted(Event, frozen=True, kw_only=True):
    plan_id: str
    step: str
    tool: str
    index: int


class StepFinished(Event, frozen=True, kw_only=True):
    plan_id: str
    step: str
    tool: str
    index: int
    ok: bool
    seconds: float
    error: str | None = None


class PlanFinished(Event, frozen=True, kw_only=True):
    plan_id: str
    ok: bool
    seconds: float
    error: str | None = None
    failed_step: str | None = None


class StageFailed(Event, frozen=True, kw_only=True):
    """A cognition stage raised; the turn went on without it."""

    stage: str
    phase: str  # "before" or "after"
    error: str
