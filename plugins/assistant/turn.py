"""The ``Turn``: one user request on its way through routing, cognition stages and the answer.

Cognition stages (memory, emotion, reasoning, anti-hallucination, personality...) are
registered with ``loom_register_stages`` and receive the same ``Turn`` object twice::

    class MyStage:
        name = "emotion"
        async def before(self, turn: Turn) -> None: ...   # ascending ``order``
        async def after(self, turn: Turn) -> None: ...    # descending ``order``

Order of a turn in ``assistant.ask``:

1. the router builds ``turn.plan`` (a ``plugins.assistant.plan.Plan``);
2. every enabled stage's ``before(turn)`` runs (ascending order). Stages read
   ``turn.text`` / ``turn.attachments`` / ``turn.plan`` and write their influence:
   ``turn.context`` (background lines such as recalled memories), ``turn.instructions``
   (style/system lines such as tone or personality), ``turn.strategy`` and
   ``turn.samples`` (reasoning), or ``turn.metadata`` (anything else, namespaced by
   stage name, e.g. ``turn.metadata["emotion"] = {...}``). A stage may set
   ``turn.answer`` to answer without running the plan (e.g. a memory that already
   knows), in which case the plan is skipped;
3. the plan runs. Where the coordinator itself answers (``assistant.chat``) it uses
   ``turn.context`` + ``turn.instructions``, and, for ``strategy == "chain_of_thought"``,
   asks it to think step by step. With ``turn.samples > 1`` it generates that many
   answers into ``turn.candidates`` and sets ``turn.answer`` to the first; a stage may
   pick the majority and set ``turn.confidence`` / ``turn.uncertain`` in ``after``;
4. every enabled stage's ``after(turn)`` runs (descending order): store memories,
   judge agreement, mark uncertainty (``turn.uncertain = True`` makes the assistant
   prefix the answer with a short caveat unless the stage already rewrote it).

A turn may belong to a conversation (``turn.conversation_id``): ``turn.history`` holds
the earlier turns and ``turn.summary`` the rolling summary of older ones; after the
coordinator answered, ``turn.messages`` is exactly what it was given. Attached documents
read for the turn are described in ``turn.documents``.

A stage that raises is reported as an event and skipped; the turn goes on. Stages can
call the coordinator themselves through ``await turn.generate(prompt, ...)`` and publish
events with ``await turn.emit(event)`` (the correlation id is filled in, and the event is
recorded in ``turn.events``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from core.events import Event, new_id

if TYPE_CHECKING:  # pragma: no cover
    from .plan import Plan

#: ``generate(prompt, *, system=None, temperature=0.7, max_tokens=256) -> str``
Generate = Callable[..., Awaitable[str]]


@dataclass
class Attachment:
    """A file sent with the request. ``kind`` is detected from the file's content."""

    path: str
    kind: str = "file"  # "image", "video", "audio", "document", "text" or "file"
    mime_type: str = "application/octet-stream"
    size: int = 0


@dataclass
class Turn:
    """One request through the assistant; see the module docstring for the life cycle."""

    text: str
    session_id: str = "default"
    attachments: list[Attachment] = field(default_factory=list)
    plan: Plan | None = None
    answer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    # What stages write to shape the coordinator's answer.
    context: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    strategy: str = "direct"  # "direct", "chain_of_thought" or "self_consistency"
    samples: int = 1
    candidates: list[str] = field(default_factory=list)
    confidence: float | None = None
    uncertain: bool = False

    # Set by the assistant.
    correlation_id: str = field(default_factory=new_id)
    started_at: float = field(default_factory=time.time)
    app: Any = None  # the running Loom (app.call, app.pool, app.bus)
    step_results: dict[str, Any] = field(default_factory=dict)  # step id -> ToolResult
    _generate: Generate | None = None

    # The conversation this turn belongs to (see ``conversation.py``).
    conversation_id: str | None = None  # None: a single request, or a client-held history
    history: list[dict[str, str]] = field(default_factory=list)  # earlier turns, oldest first
    summary: str = ""  # the rolling summary of turns older than ``history``
    folded: tuple[int, str] | None = None  # (turns folded, new summary) once this turn folded some
    messages: list[dict[str, Any]] = field(default_factory=list)  # what the coordinator was given
    documents: list[dict[str, Any]] = field(default_factory=list)  # attachments read as documents
    on_text: Callable[[str], Awaitable[None]] | None = None  # receives the answer as it is written

    @property
    def transcript(self) -> str:
        """The user's words: the typed text, or what a ``voice.transcribe`` step heard."""
        return self.metadata.get("transcript") or self.text

    async def emit(self, event: Event) -> Event:
        """Publish ``event`` on the bus under this turn's correlation id and record it."""
        if event.correlation_id is None:
            event = msgspec.structs.replace(event, correlation_id=self.correlation_id)
        self.events.append(event)
        if self.app is not None:
            await self.app.bus.publish(event)
        return event

    async def generate(self, prompt: str, **kw: Any) -> str:
        """Ask the coordinator model directly (no stages): ``system``, ``temperature``, ``max_tokens``."""
        if self._generate is None:
            raise RuntimeError("this turn has no coordinator attached (not run by assistant.ask)")
        return await self._generate(prompt, **kw)
