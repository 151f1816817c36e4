"""SSE resumability for MCP over streamable HTTP (2025-11-25): an in-memory event store.

With an event store the SDK's transport gives every SSE event an id and opens each
stream with a priming event; a client whose stream dropped (a proxy timeout, a laptop
lid, ``ctx.close_sse_stream()``) reconnects with ``GET`` and ``Last-Event-ID`` and gets
every message it missed on that stream, then the live rest of it.

Kept in memory, bounded both ways: at most ``max_events`` events overall (oldest
dropped first) and ``max_bytes`` of encoded messages. A client that comes back after
its events were dropped gets nothing replayed (the SDK then answers from live
messages only), which is the same as an expired session: it must re-read state.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

# Per session: 64 sessions at most (server.max_sessions) keep at most 256 MiB here.
PER_SESSION_EVENTS = 2_000
PER_SESSION_BYTES = 4 * 1024 * 1024


class MemoryEventStore(EventStore):
    """Bounded in-memory ``EventStore`` for one session; event ids count up from 1."""

    def __init__(self, *, max_events: int = PER_SESSION_EVENTS, max_bytes: int = PER_SESSION_BYTES) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._counter = itertools.count(1)
        # event id -> (stream id, message or None for priming events, encoded size)
        self._events: OrderedDict[EventId, tuple[StreamId, JSONRPCMessage | None, int]] = OrderedDict()
        self._bytes = 0

    @property
    def count(self) -> int:  # not __len__: the SDK tests `if event_store`, and empty must stay truthy
        return len(self._events)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = f"{next(self._counter)}"
        size = 0 if message is None else len(message.model_dump_json(by_alias=True, exclude_unset=True))
        self._events[event_id] = (stream_id, message, size)
        self._bytes += size
        while self._events and (len(self._events) > self.max_events or self._bytes > self.max_bytes):
            _, (_, _, dropped) = self._events.popitem(last=False)
            self._bytes -= dropped
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        """Send every message stored on ``last_event_id``'s stream after it; its stream id."""
        entry = self._events.get(last_event_id)
        if entry is None:
            return None  # unknown or already dropped: nothing to replay
        stream_id = entry[0]
        after = False
        for event_id, (sid, message, _) in list(self._events.items()):
            if event_id == last_event_id:
                after = True
                continue
            if after and sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def per_session_event_stores(manager_cls: type) -> type:
    """A subclass of ``manager_cls`` (a ``StreamableHTTPSessionManager``) that gives each
    session its own ``MemoryEventStore``.

    The SDK passes one store to every session, but its stream ids are JSON-RPC request
    ids, which repeat across sessions (every client starts at 1): one shared store would
    replay another session's messages. The manager reads ``event_store`` once per new
    session, so a property that mints a fresh store keeps sessions apart.
    """

    class _PerSessionEventStores(manager_cls):  # type: ignore[misc,valid-type]
        @property  # type: ignore[override]
        def event_store(self) -> EventStore:
            return MemoryEventStore(max_events=PER_SESSION_EVENTS, max_bytes=PER_SESSION_BYTES)

        @event_store.setter
        def event_store(self, value: Any) -> None:
            pass  # always per session, see above

    _PerSessionEventStores.__name__ = f"Resumable{manager_cls.__name__}"
    return _PerSessionEventStores


def resumable_session_manager(*, base: type | None = None, **kwargs: Any) -> Any:
    """A session manager (``base``, default the SDK's) with per-session event stores."""
    if base is None:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        base = StreamableHTTPSessionManager
    return per_session_event_stores(base)(**kwargs)
