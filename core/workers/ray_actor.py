"""The Ray actor that holds one model: the same backend class and ``run`` as a worker process.

``ModelActor`` is a plain class (``ray`` is not imported here); ``core.workers.ray`` wraps it
with ``ray.remote`` and starts it as a threaded actor, so ``cancel`` runs while ``run`` is
still streaming. ``run`` is a streaming generator: the backend works in a thread of its own
and pushes events into a queue; each item the generator yields is every event waiting at
that moment (at most one batch per ``BATCH_S`` after the first), so neither a slow consumer
nor Ray's per-object cost slows the model down; the first token goes out at once.
Requests, events and results are msgspec structs, which Ray pickles (big bytes values go
through Ray's object store, which works across machines where files would not).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

_END = object()
BATCH_S = 0.01


class ModelActor:
    def __init__(self) -> None:
        self.backend: Any = None
        self.handle: Any = None
        self.calls: dict[int, threading.Event] = {}
        self.lock = threading.Lock()

    def load(self, backend_path: str, spec: Any, device: str) -> tuple[Any, int, int, float, int]:
        """Load the model; returns ``(info, rss_before, rss_after, seconds, pid)``."""
        import importlib

        from ..memprobe import process_rss
        from .main import describe
        from .protocol import import_object

        for name in ("core.capabilities", "core.capabilities.media"):
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        self.backend = import_object(backend_path)()
        before = process_rss()
        t0 = time.perf_counter()
        self.handle = self.backend.load(spec, device)
        info = describe(self.backend, self.handle, spec)
        return info, before, process_rss(), time.perf_counter() - t0, os.getpid()

    def run(self, call_id: int, op: str, request: Any) -> Iterator[tuple[str, Any]]:
        """Yields ``("events", [...])`` batches, then ``("done", result)`` or ``("error", (type, msg))``."""
        from .protocol import error_type_name

        cancel = threading.Event()
        with self.lock:
            self.calls[call_id] = cancel
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        outcome: list[tuple[str, Any]] = []

        def work() -> None:
            try:
                outcome.append(("done", self.backend.run(self.handle, op, request, q.put, cancel)))
            except BaseException as exc:
                outcome.append(("error", (error_type_name(exc), str(exc), traceback.format_exc(limit=8))))
            finally:
                q.put(_END)

        threading.Thread(target=work, name=f"loom-{op}", daemon=True).start()
        try:
            finished = False
            last = 0.0
            while not finished:
                batch = [q.get()]
                # Each yield is a Ray object (about a millisecond of the actor's CPU, taken from the
                # model): after the first event, hand over at most every BATCH_S.
                wait = last + BATCH_S - time.perf_counter()
                if last and wait > 0 and batch[0] is not _END:
                    time.sleep(wait)
                last = time.perf_counter()
                while True:
                    try:
                        batch.append(q.get_nowait())
                    except queue.Empty:
                        break
                if batch[-1] is _END:
                    finished = True
                    batch.pop()
                if batch:
                    yield ("events", batch)
            yield outcome[0]
        finally:
            cancel.set()  # the consumer went away (cancelled, or the daemon died): stop the work
            with self.lock:
                self.calls.pop(call_id, None)

    def cancel(self, call_id: int) -> bool:
        with self.lock:
            ev = self.calls.get(call_id)
        if ev is not None:
            ev.set()
        return ev is not None

    def unload(self) -> None:
        if self.handle is not None:
            self.backend.unload(self.handle)
            self.handle = None
