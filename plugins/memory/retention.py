"""How well a memory is still remembered: an Ebbinghaus forgetting curve.

    R(t) = exp(-t / S)

``t`` is the time since the memory was last used (stored or recalled) and ``S`` its
stability. Stability starts from a base per kind (working memory fades in hours,
conversations in days, facts about the user in months) and grows with importance,
with emotional intensity (emotional events are remembered better) and with every
recall (spaced repetition: each access multiplies it by a factor that grows with the
logarithm of the access count). Items whose retention falls under the archive
threshold are archived, never deleted.

Everything here is plain arithmetic on numbers or numpy arrays so the recall path can
score thousands of candidates at once.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec

HOUR = 3600.0
DAY = 24 * HOUR

KINDS = ("working", "episodic", "semantic")
KIND_CODE = {k: i for i, k in enumerate(KINDS)}


class RetentionSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.memory.retention]``: the curve's constants."""

    working_hours: float = 2.0  # base stability of working memory
    episodic_hours: float = 72.0  # conversations: three days before boosts
    semantic_hours: float = 720.0  # facts about the user: a month before boosts
    importance_boost: float = 2.0  # S *= 1 + importance_boost * importance (0..1)
    emotion_boost: float = 1.5  # S *= 1 + emotion_boost * emotion (0..1)
    access_boost: float = 1.0  # S *= 1 + access_boost * ln(1 + accesses)
    archive_below: float = 0.02  # retention under this is archived by a sweep

    def base_hours(self) -> list[float]:
        return [self.working_hours, self.episodic_hours, self.semantic_hours]


def stability(kind: str, importance: float, emotion: float, accesses: float,
              s: RetentionSettings) -> float:
    """Stability in seconds for one memory."""
    base = s.base_hours()[KIND_CODE[kind]] * HOUR
    return (base * (1 + s.importance_boost * importance) * (1 + s.emotion_boost * emotion)
            * (1 + s.access_boost * math.log1p(accesses)))


def retention(elapsed: float, kind: str, importance: float, emotion: float, accesses: float,
              s: RetentionSettings) -> float:
    """R in [0, 1] after ``elapsed`` seconds since the last access."""
    return math.exp(-max(elapsed, 0.0) / stability(kind, importance, emotion, accesses, s))


def retention_array(now: float, last_access: Any, kind_code: Any, importance: Any, emotion: Any,
                    accesses: Any, s: RetentionSettings) -> Any:
    """Vectorised ``retention`` over numpy arrays (the recall and sweep paths)."""
    import numpy as np

    base = np.asarray(s.base_hours(), np.float64)[np.asarray(kind_code, np.int64)] * HOUR
    stab = (base * (1 + s.importance_boost * np.asarray(importance, np.float64))
            * (1 + s.emotion_boost * np.asarray(emotion, np.float64))
            * (1 + s.access_boost * np.log1p(np.asarray(accesses, np.float64))))
    elapsed = np.maximum(now - np.asarray(last_access, np.float64), 0.0)
    return np.exp(-elapsed / stab)


def ago(ts: float, now: float | None = None) -> str:
    """How long ago ``ts`` was, the way a person says it: "just now", "yesterday", "3 days ago"."""
    delta = (time.time() if now is None else now) - ts
    if delta < 0:
        return "just now"

    def n(value: float, unit: str) -> str:
        k = int(value)
        return f"{'an' if k == 1 and unit == 'hour' else 'a' if k == 1 else k} {unit}{'' if k == 1 else 's'} ago"

    if delta < 60:
        return "just now"
    if delta < HOUR:
        return n(delta // 60, "minute")
    if delta < DAY:
        return n(delta // HOUR, "hour")
    if delta < 2 * DAY:
        return "yesterday"
    if delta < 14 * DAY:
        return n(delta // DAY, "day")
    if delta < 60 * DAY:
        return n(delta // (7 * DAY), "week")
    if delta < 365 * DAY:
        return n(delta // (30 * DAY), "month")
    return n(delta // (365 * DAY), "year")
