"""Blocking work in a thread that a cancelled call stops cleanly.

``await run_blocking(fn, cancelled)`` runs ``fn`` in a worker thread. If the awaiting task
is cancelled (an MCP ``notifications/cancelled``, an HTTP client going away, a timeout),
``cancelled`` is set so ``fn`` stops at its next check, and the caller waits, shielded,
for the thread to really stop before the cancellation goes on: whatever ``fn`` holds (a
model pinned by ``pool.use``, a file) is never released under a thread still using it.

Tools pass ``ctx.cancelled``; model backends get the same kind of flag in ``run``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

T = TypeVar("T")


class CancelFlag(threading.Event):
    """A cancel flag that also calls listeners the moment it is set.

    Backends in this process poll the flag between steps, which costs nothing; a worker in
    another process cannot see it, so its invoker registers ``on_set`` to forward the cancel
    at once instead of waking a thread every few milliseconds to look (on a machine whose
    cores all decode, each wake-up steals time from the decoding threads).
    """

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def set(self) -> None:
        with self._guard:
            super().set()
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()

    def on_set(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` once when the flag is set (now, if it already is); returns a remover."""
        with self._guard:
            if not self.is_set():
                self._listeners.append(listener)
                return lambda: self._remove(listener)
        listener()
        return lambda: None

    def _remove(self, listener: Callable[[], None]) -> None:
        with self._guard:
            if listener in self._listeners:
                self._listeners.remove(listener)


async def run_blocking(fn: Callable[[], T], cancelled: threading.Event, *, stop_wait: float | None = None) -> T:
    """Run ``fn`` in a worker thread; on cancellation set ``cancelled`` and wait for ``fn`` to end.

    ``stop_wait`` caps that wait in seconds (None: as long as it takes); the thread still
    stops at its next check, the caller just gets control back earlier.
    """
    done = anyio.Event()
    token = anyio.lowlevel.current_token()

    def work() -> T:
        try:
            return fn()
        finally:
            try:
                anyio.from_thread.run_sync(done.set, token=token)
            except RuntimeError:
                pass  # the loop is gone: nobody waits

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancelled.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(stop_wait):
            await done.wait()
        raise
