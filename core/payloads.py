"""Events on the wire without their large payloads: references instead of bytes.

An event may carry bytes (``SpeechChunk.pcm`` is ~200 KB a sentence). Sent as-is on
``loom://events`` or ``/events`` that is base64 in JSON, which breaks clients with a
1 MiB SSE line limit and floods every watcher with audio it did not ask for.
``event_to_wire`` replaces every ``bytes`` value larger than ``INLINE_BYTES`` with a
reference, ``{"$ref": "loom://events/<event id>/<field>", "bytes": N}``; the bytes
stay readable through that resource for as long as the event is in the bus's recent
window (``event_payload``).
"""

from __future__ import annotations

from typing import Any

import msgspec

INLINE_BYTES = 1024
REF_TEMPLATE = "loom://events/{id}/{field}"


def payload_uri(event_id: str, field: str) -> str:
    return REF_TEMPLATE.format(id=event_id, field=field)


def event_to_wire(event: Any, *, inline_bytes: int = INLINE_BYTES) -> dict[str, Any]:
    """``event`` as JSON-ready builtins, large ``bytes`` fields replaced by references."""
    out: dict[str, Any] = {}
    raw = msgspec.structs.asdict(event)
    for key, value in msgspec.to_builtins(event).items():
        original = raw.get(key)
        if isinstance(original, bytes | bytearray | memoryview) and len(original) > inline_bytes:
            out[key] = {"$ref": payload_uri(event.id, key), "bytes": len(original)}
        else:
            out[key] = value
    return out


def event_payload(events: Any, event_id: str, field: str) -> bytes:
    """The bytes of ``field`` of the event ``event_id`` among ``events`` (the bus's recent ones).

    Raises ``LookupError`` with a message saying why (gone from the window, no such field).
    """
    for event in events:
        if event.id == event_id:
            value = getattr(event, field, None) if field in event.__struct_fields__ else None
            if not isinstance(value, bytes | bytearray | memoryview):
                raise LookupError(f"event {event_id} ({type(event).__name__}) has no bytes field {field!r}")
            return bytes(value)
    raise LookupError(f"event {event_id} is no longer in the recent window (loom://events keeps the last "
                      "events only); subscribe to loom://events to fetch payloads while they are fresh")
