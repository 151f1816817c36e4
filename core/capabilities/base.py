"""The machinery under every capability handle: operations, streams of events, invokers.

A backend serves *operations* (``"chat.generate"``, ``"embed.texts"``...): a synchronous
``backend.run(handle, op, request, emit, cancel)`` that may ``emit`` events while it works
(text deltas, progress) and returns a result. Requests, events and results are msgspec
structs, so the same call can run

- ``inline``: in a thread of the daemon's process (``InlineInvoker``), or
- in a worker process or a Ray actor: an invoker that ships the request as a frame and
  feeds the frames it gets back into the same ``OpStream`` (``core.workers``).

Callers never see the invoker: they hold a typed capability (``Chat``, ``Embed``...) whose
methods build requests and read results. ``OpStream`` is the async side of one call: an
async iterator of events with ``result`` once the call ends. Leaving it early (``break``,
an error, cancellation) sets the call's cancel flag and waits until the backend has let go
of the model, so the pool may unload it right after.
"""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import anyio
import msgspec

from ..blocking import CancelFlag
from ..tools import ToolError

E = TypeVar("E")
R = TypeVar("R")

#: what a runner hands the stream: ("event", e), ("done", result) or ("error", exception)
Post = Callable[[tuple[str, Any]], None]
#: awaited after the call ends: returns once the backend no longer touches the model
Released = Callable[[], Awaitable[None]]


class CapabilityError(ToolError):
    """A request this model cannot serve (no vision projector, not loaded for embeddings...)."""


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a loaded model can do, read once at load (in the worker for out-of-process models)."""

    name: str
    backend: str
    capabilities: tuple[str, ...]  # capability kinds: "chat", "embed", "vision", "image", ...
    context_size: int | None = None
    vision: bool = False  # chat messages may carry images
    details: dict[str, Any] = {}  # backend specifics worth showing (family, sample_rate, dims...)


class OpSpec(msgspec.Struct, frozen=True):
    """The types of one operation, so a worker can decode what it is sent."""

    name: str
    request: Any
    result: Any
    event: Any = None


OPS: dict[str, OpSpec] = {}


def operation(name: str, request: Any, result: Any, event: Any = None) -> str:
    """Declare an operation's types (capability modules do this at import)."""
    OPS[name] = OpSpec(name, request, result, event)
    return name


class Invoker(Protocol):
    """How a capability reaches its model: a thread here, a worker process, a Ray actor."""

    placement: str

    def launch(self, op: str, request: Any, post: Post, cancel: threading.Event) -> Released:
        """Start ``op``; everything it produces goes through ``post``. Must not block."""
        ...


# -- the thread side ------------------------------------------------------------------------


def loop_poster(send: Any) -> Post:
    """A function a thread calls to hand an item to the event loop without waiting for it."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): hand over through anyio, waiting each time
        loop = None
    if loop is not None:

        def post(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(send.send_nowait, item)
            except RuntimeError:
                pass  # the loop is closed: nobody is listening any more

        return post
    token = anyio.lowlevel.current_token()

    def post_blocking(item: tuple[str, Any]) -> None:
        try:
            anyio.from_thread.run_sync(send.send_nowait, item, token=token)
        except RuntimeError:
            pass

    return post_blocking


class InlineInvoker:
    """Runs operations in a daemon thread of this process (``placement = "inline"``)."""

    placement = "inline"

    def __init__(self, backend: Any, handle: Any, model: str = "") -> None:
        self.backend = backend
        self.handle = handle
        self.model = model

    def launch(self, op: str, request: Any, post: Post, cancel: threading.Event) -> Released:
        done = threading.Event()
        backend, handle = self.backend, self.handle

        def work() -> None:
            try:
                result = backend.run(handle, op, request, lambda e: post(("event", e)), cancel)
                post(("done", result))
            except BaseException as exc:  # handed to the caller, raised there
                post(("error", exc))
            finally:
                done.set()

        threading.Thread(target=work, name=f"loom-{op}", daemon=True).start()

        async def released() -> None:
            if not done.is_set():
                await anyio.to_thread.run_sync(done.wait)

        return released


# -- the caller side ------------------------------------------------------------------------


class OpStream(Generic[E, R]):
    """The events of one operation as they arrive; ``result`` once it has ended."""

    def __init__(self, invoker: Invoker, op: str, request: Any, cancel: threading.Event | None = None) -> None:
        self.invoker = invoker
        self.op = op
        self.request = request
        self.cancel = cancel if cancel is not None else CancelFlag()
        self.result: R | None = None
        self.error: BaseException | None = None
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, Any]](math.inf)
        self._released: Released | None = None

    def _start(self) -> None:
        if self._released is None:
            self._released = self.invoker.launch(self.op, self.request, loop_poster(self._send), self.cancel)

    def __aiter__(self) -> AsyncIterator[E]:
        self._start()
        return self

    async def __anext__(self) -> E:
        self._start()
        if self.result is not None or self.error is not None:
            raise StopAsyncIteration
        try:
            kind, value = await self._receive.receive()
        except anyio.get_cancelled_exc_class():
            self.cancel.set()
            raise
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        return self._take(kind, value)

    def _take(self, kind: str, value: Any) -> Any:
        if kind == "event":
            return value
        if kind == "error":
            self.error = value
            raise value
        self.result = value
        raise StopAsyncIteration

    def drain(self) -> list[E]:
        """Every event already waiting, without waiting (for coalescing deltas)."""
        out: list[E] = []
        while self.result is None and self.error is None:
            try:
                kind, value = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            try:
                out.append(self._take(kind, value))
            except StopAsyncIteration:
                break
        return out

    async def finish(self, on_event: Callable[[E], Awaitable[None] | None] | None = None) -> R:
        """Run to the end (``on_event`` sees each event) and return the result."""
        async with self:
            async for event in self:
                if on_event is not None:
                    r = on_event(event)
                    if r is not None:
                        await r
        assert self.result is not None
        return self.result

    async def __aenter__(self) -> OpStream[E, R]:
        self._start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the operation (if still running) and wait until the backend has let go."""
        if self._released is None:
            return
        with anyio.CancelScope(shield=True):
            if self.result is None and self.error is None:
                self.cancel.set()
                while self.result is None and self.error is None:
                    kind, value = await self._receive.receive()
                    if kind == "done":
                        self.result = value
                    elif kind == "error":
                        self.error = value
            await self._released()


class Capability:
    """A typed handle on one loaded model for one kind of work; see the subclasses."""

    kind: ClassVar[str] = ""

    def __init__(self, model: str, invoker: Invoker, info: ModelInfo) -> None:
        self.model = model
        self.info = info
        self._invoker = invoker

    @property
    def placement(self) -> str:
        return self._invoker.placement

    def _open(self, op: str, request: Any, cancel: threading.Event | None = None) -> OpStream[Any, Any]:
        return OpStream(self._invoker, op, request, cancel)

    async def _call(self, op: str, request: Any, *, cancel: threading.Event | None = None,
                    on_event: Callable[[Any], Awaitable[None] | None] | None = None) -> Any:
        return await self._open(op, request, cancel).finish(on_event)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model} ({self.placement})>"


CAPABILITIES: dict[str, type[Capability]] = {}


def capability(cls: type[Capability]) -> type[Capability]:
    """Register a capability class under its ``kind``."""
    CAPABILITIES[cls.kind] = cls
    return cls
