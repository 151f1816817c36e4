"""Typed events: frozen, tagged msgspec structs that encode to JSON and msgpack.

Every event carries an id, a timestamp, the correlation id of the request that caused
it and the plugin that emitted it. Subclasses register themselves so that a JSON or
msgpack payload decodes back into the right class by its ``kind`` tag.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, ClassVar

import msgspec

_counter = itertools.count(1)
_decoders: dict[str, Any] = {}  # cached decoders over the union of every event class
_prefix = f"{os.getpid():x}-{int(time.time() * 1000):x}"


def new_id() -> str:
    """A process-unique, sortable id (cheap: the bus may mint 100k of these a second)."""
    return f"{_prefix}-{next(_counter):x}"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag=True):
    """Base of every event. Subscribe to ``Event`` to receive everything."""

    id: str = msgspec.field(default_factory=new_id)
    ts: float = msgspec.field(default_factory=time.time)
    correlation_id: str | None = None
    source: str = "core"

    registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Event.registry[cls.__name__] = cls
        _decoders.clear()


# --- kernel events -------------------------------------------------------------------


class PluginLoaded(Event, frozen=True, kw_only=True):
    plugin: str
    version: str | None = None


class PluginFailed(Event, frozen=True, kw_only=True):
    """A plugin failed: at import, at registration, or a subscriber that raised."""

    plugin: str
    stage: str  # "import", "register", "subscriber", "startup", "shutdown"
    error: str
    quarantined: bool = False


class PluginStateChanged(Event, frozen=True, kw_only=True):
    plugin: str
    enabled: bool


class ToolsChanged(Event, frozen=True, kw_only=True):
    """The set of registered tools changed (MCP sends tools/list_changed on it)."""

    added: list[str] = []
    removed: list[str] = []


class ToolCalled(Event, frozen=True, kw_only=True):
    tool: str
    surface: str = "python"


class ToolFinished(Event, frozen=True, kw_only=True):
    tool: str
    ok: bool
    seconds: float
    error: str | None = None


class Progress(Event, frozen=True, kw_only=True):
    tool: str
    progress: float
    total: float | None = None
    message: str | None = None


class Log(Event, frozen=True, kw_only=True):
    level: str
    message: str


# --- encoding ------------------------------------------------------------------------

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def _union() -> Any:
    classes = tuple(Event.registry.values())
    return classes[0] if len(classes) == 1 else _build_union(classes)


def _build_union(classes: tuple[type[Event], ...]) -> Any:
    from typing import Union

    return Union[classes]  # noqa: UP007 - a runtime union of a dynamic tuple


def _decoder(fmt: str) -> Any:
    dec = _decoders.get(fmt)
    if dec is None:
        union = _union()
        dec = msgspec.json.Decoder(union) if fmt == "json" else msgspec.msgpack.Decoder(union)
        _decoders[fmt] = dec
    return dec


def to_json(event: Event) -> bytes:
    return _json_encoder.encode(event)


def from_json(data: bytes | str) -> Event:
    """Decode any registered event from JSON; the ``kind`` tag picks the class."""
    return _decoder("json").decode(data)


def to_msgpack(event: Event) -> bytes:
    return _msgpack_encoder.encode(event)


def from_msgpack(data: bytes) -> Event:
    return _decoder("msgpack").decode(data)
