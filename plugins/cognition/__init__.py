"""Cognition stages around the coordinator's answer: emotion (Plutchik + PAD from a
lexicon, English and Spanish), personality (Big Five -> style, adapted to work / casual /
emotional context), anti-hallucination (agreement across samples -> confidence; low
confidence is said, not hidden) and reasoning (direct / chain of thought /
self-consistency by estimated difficulty, published as ``StrategyChosen``).

Each stage can be turned off: ``[plugin.cognition] stages = { reasoning = false }`` (not
registered) or ``[plugin.reasoning] enabled = false`` (skipped by the assistant). See
``settings.py`` for every knob.
"""

from __future__ import annotations

from typing import Any

from core.hookspecs import hookimpl

from .settings import CognitionSettings

_settings = CognitionSettings()


@hookimpl
def loom_configure(config: Any, app: Any) -> None:
    global _settings
    _settings = config.plugin_settings("cognition", CognitionSettings)


@hookimpl
def loom_register_stages(register: Any) -> None:
    from .stages import ORDERS, STAGES

    for name, cls in STAGES.items():
        if _settings.enabled(name):
            register(cls(_settings), name=name, order=ORDERS[name])
