"""Events are frozen, tagged, carry their envelope, and round-trip through JSON and msgpack."""

from __future__ import annotations

import msgspec
import pytest

from core import events as ev


class Custom(ev.Event, frozen=True, kw_only=True):
    payload: dict[str, int] = {}


def test_envelope_and_round_trip():
    e = Custom(payload={"a": 1}, correlation_id="req-1", source="sample")
    assert e.id and e.ts > 0
    for enc, dec in ((ev.to_json, ev.from_json), (ev.to_msgpack, ev.from_msgpack)):
        back = dec(enc(e))
        assert type(back) is Custom and back == e
    assert b'"kind":"Custom"' in ev.to_json(e)


def test_kernel_events_decode_to_their_class():
    e = ev.ToolFinished(tool="a.b", ok=False, seconds=0.5, error="bad")
    assert isinstance(ev.from_json(ev.to_json(e)), ev.ToolFinished)


def test_events_are_frozen_and_ids_unique():
    e = ev.Log(level="info", message="x")
    with pytest.raises(AttributeError):
        e.message = "y"  # type: ignore[misc]
    assert len({ev.Log(level="i", message="m").id for _ in range(1000)}) == 1000


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'Nope'"):
        ev.from_json(b'{"kind": "Nope"}')
