"""Run capability calls as if the model lived in another process: every request, event and
result goes through msgpack and back as its operation declares it (``core.capabilities.OPS``).

A tool that still leaned on a raw library object, on a request or result being the same
object on both sides, or on a type msgpack cannot carry (a PIL image, a numpy array, a
tensor) fails under it. ``over_the_wire(monkeypatch)`` makes the pool hand out such handles.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec

from core.capabilities import OPS, InlineInvoker


def through(value: Any, kind: Any) -> Any:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=kind)


class WireInvoker(InlineInvoker):
    """An inline invoker whose traffic is serialised like a worker pipe's."""

    placement = "wire"
    calls: list[str] = []

    def launch(self, op: str, request: Any, post: Any, cancel: threading.Event) -> Any:
        spec = OPS[op]
        WireInvoker.calls.append(op)

        def wired(item: tuple[str, Any]) -> None:
            kind, value = item
            if kind == "event":
                value = through(value, spec.event)
            elif kind == "done":
                value = through(value, spec.result)
            post((kind, value))

        return super().launch(op, through(request, spec.request), wired, cancel)


def over_the_wire(monkeypatch: Any) -> list[str]:
    """Make every model the pool loads from now on run inline and talk through ``WireInvoker``;
    returns the list the operations called are recorded in."""
    import core.pool

    WireInvoker.calls = []
    monkeypatch.setattr(core.pool, "InlineInvoker", WireInvoker)
    if hasattr(core.pool.ModelPool, "placement_of"):  # a real worker would serialise too, but elsewhere
        monkeypatch.setattr(core.pool.ModelPool, "placement_of", lambda self, cfg, backend: "inline")
    return WireInvoker.calls
