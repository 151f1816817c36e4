"""The event bus: typed pub/sub with one bounded mailbox and consumer task per subscriber.

Design (after asphalt): a publisher never runs subscriber code. Each subscriber owns a
bounded FIFO mailbox drained by its own task, so a slow subscriber only ever slows
itself, and its declared overflow policy says what happens when its mailbox is full:

- ``block``: the publisher waits for room, at most ``block_timeout`` seconds, then the
  event is dropped for that subscriber and counted (bounded backpressure);
- ``drop_newest``: the new event is dropped and counted;
- ``drop_oldest``: the oldest queued event is dropped and counted.

A subscriber that raises is logged, reported as a ``PluginFailed`` event, and after
``max_failures`` consecutive failures quarantined (unsubscribed). The bus itself, and
every other subscriber, keep going.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from .events import Event, PluginFailed
from .logging import get_logger

log = get_logger("loom.bus")

Overflow = Literal["block", "drop_newest", "drop_oldest"]
Handler = Callable[[Any], Awaitable[None] | None]

# A consumer that always finds work waiting still yields to the loop this often,
# so a busy subscriber cannot starve request handling.
_YIELD_EVERY = 64


@dataclass(eq=False)
class Subscription:
    """One subscriber: its filter, its mailbox, its policy and its counters."""

    event_type: type[Event]
    handler: Handler
    name: str
    plugin: str
    maxsize: int
    overflow: Overflow
    block_timeout: float
    max_failures: int
    delivered: int = 0
    dropped: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    quarantined: bool = False
    active: bool = True
    _queue: deque[Event] = field(default_factory=deque)
    _is_async: bool = False
    _wakeup: anyio.Event | None = None
    _space: anyio.Event | None = None
    _done: anyio.Event = field(default_factory=anyio.Event)
    _started: bool = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "event_type": self.event_type.__name__,
            "overflow": self.overflow,
            "maxsize": self.maxsize,
            "pending": self.pending,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "failures": self.failures,
            "quarantined": self.quarantined,
        }

    # -- mailbox ------------------------------------------------------------------------

    def _offer(self, event: Event) -> bool:
        """Put without waiting; False when full (the caller applies the policy)."""
        q = self._queue
        if len(q) >= self.maxsize:
            if self.overflow == "drop_oldest":
                q.popleft()
                self.dropped += 1
            else:
                return False
        q.append(event)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()
        return True

    async def _put_blocking(self, event: Event) -> None:
        with anyio.move_on_after(self.block_timeout):
            while self.active:
                if self._offer(event):
                    return
                if self._space is None:
                    self._space = anyio.Event()
                await self._space.wait()
        if self.active:
            self.dropped += 1
            log.warning("subscriber full, event dropped", subscriber=self.name, kind=type(event).__name__)

    def _signal_space(self) -> None:
        space = self._space
        if space is not None:
            self._space = None
            space.set()


class EventBus:
    """Publish typed events to subscribers by type; a base type receives its subtypes.

    Use as an async context manager: consumer tasks live in the bus's task group.
    Subscribers may be added before or after it starts.
    """

    def __init__(self, *, default_maxsize: int = 1024, recent: int = 200) -> None:
        self.default_maxsize = default_maxsize
        self._subs: list[Subscription] = []
        self._by_type: dict[type, tuple[Subscription, ...]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._closing = False
        self.published = 0
        self.recent: deque[Event] = deque(maxlen=recent)

    # -- subscribing --------------------------------------------------------------------

    def subscribe(
        self,
        event_type: type[Event],
        handler: Handler,
        *,
        name: str | None = None,
        plugin: str = "core",
        maxsize: int | None = None,
        overflow: Overflow = "block",
        block_timeout: float = 1.0,
        max_failures: int = 5,
    ) -> Subscription:
        """Deliver every event that is an instance of ``event_type`` to ``handler``.

        ``handler`` may be sync or async; it runs in this subscriber's own task, one
        event at a time, in publish order.
        """
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise TypeError(f"event_type must be an Event subclass, got {event_type!r}")
        if overflow not in ("block", "drop_newest", "drop_oldest"):
            raise ValueError(f"overflow must be block, drop_newest or drop_oldest, got {overflow!r}")
        size = maxsize or self.default_maxsize
        if size < 1:
            raise ValueError("maxsize must be at least 1")
        sub = Subscription(
            event_type=event_type,
            handler=handler,
            name=name or getattr(handler, "__qualname__", repr(handler)),
            plugin=plugin,
            maxsize=size,
            overflow=overflow,
            block_timeout=block_timeout,
            max_failures=max_failures,
        )
        sub._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
        )
        self._subs.append(sub)
        self._by_type.clear()
        if self._tg is not None:
            self._tg.start_soon(self._consume, sub, name=f"bus:{sub.name}")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub``; what is already queued is discarded."""
        if sub in self._subs:
            self._subs.remove(sub)
            self._by_type.clear()
        sub.active = False
        sub._queue.clear()
        sub._signal_space()
        if sub._wakeup is not None:
            sub._wakeup.set()

    def unsubscribe_plugin(self, plugin: str) -> int:
        subs = [s for s in self._subs if s.plugin == plugin]
        for s in subs:
            self.unsubscribe(s)
        return len(subs)

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)

    def _targets(self, cls: type) -> tuple[Subscription, ...]:
        targets = self._by_type.get(cls)
        if targets is None:
            targets = tuple(s for s in self._subs if issubclass(cls, s.event_type))
            self._by_type[cls] = targets
        return targets

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Queue ``event`` for every matching subscriber, applying each one's policy."""
        self.published += 1
        self.recent.append(event)
        for sub in self._targets(type(event)):
            if not sub._offer(event):
                if sub.overflow == "block":
                    await sub._put_blocking(event)
                else:
                    sub.dropped += 1

    def publish_nowait(self, event: Event) -> None:
        """Publish from synchronous code on the event loop thread; never waits.

        A full ``block`` subscriber drops the event (counted) instead of waiting.
        """
        self.published += 1
        self.recent.append(event)
        for sub in self._targets(type(event)):
            if not sub._offer(event):
                sub.dropped += 1

    def publish_threadsafe(self, event: Event) -> None:
        """Publish from a worker thread (a sync tool, a model load)."""
        if self._token is None:
            raise RuntimeError("the bus is not running")
        anyio.from_thread.run_sync(self.publish_nowait, event, token=self._token)

    # -- consuming ----------------------------------------------------------------------

    async def _consume(self, sub: Subscription) -> None:
        if sub._started:
            return
        sub._started = True
        q = sub._queue
        handler = sub.handler
        is_async = sub._is_async
        try:
            while sub.active:
                n = 0
                while q and sub.active:
                    event = q.popleft()
                    sub._signal_space()
                    try:
                        if is_async:
                            await handler(event)
                        else:
                            handler(event)
                    except Exception as exc:
                        self._failed(sub, event, exc)
                    else:
                        sub.delivered += 1
                        sub.consecutive_failures = 0
                    n += 1
                    if n % _YIELD_EVERY == 0:
                        await anyio.lowlevel.checkpoint()
                if self._closing or not sub.active:
                    break
                sub._wakeup = anyio.Event()
                await sub._wakeup.wait()
        finally:
            sub._done.set()

    def _failed(self, sub: Subscription, event: Event, exc: Exception) -> None:
        sub.failures += 1
        sub.consecutive_failures += 1
        quarantine = sub.consecutive_failures >= sub.max_failures
        log.error(
            "subscriber raised",
            subscriber=sub.name,
            plugin=sub.plugin,
            kind=type(event).__name__,
            error=repr(exc),
            quarantined=quarantine,
        )
        if quarantine:
            sub.quarantined = True
            self.unsubscribe(sub)
        report = PluginFailed(
            plugin=sub.plugin,
            stage="subscriber",
            error=f"{sub.name}: {exc!r}",
            quarantined=quarantine,
            correlation_id=event.correlation_id,
        )
        # Never report a subscriber's failure back to itself: a handler that fails on
        # PluginFailed would otherwise feed itself forever.
        self.published += 1
        self.recent.append(report)
        for other in self._targets(PluginFailed):
            if other is not sub and not other._offer(report):
                other.dropped += 1

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> EventBus:
        self._closing = False
        self._cm = anyio.create_task_group()
        self._tg = await self._cm.__aenter__()
        self._token = anyio.lowlevel.current_token()
        for sub in self._subs:
            self._tg.start_soon(self._consume, sub, name=f"bus:{sub.name}")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose(drain=exc_info[0] is None)
        # The consumers are done (or cancelled) by now. Exit the task group as if the body
        # ended normally so the body's own exception propagates as itself, not wrapped in
        # an ExceptionGroup.
        await self._cm.__aexit__(None, None, None)

    async def aclose(self, *, drain: bool = True, timeout: float = 5.0) -> None:
        """Stop the consumers: deliver what is queued (``drain``) within ``timeout``, else cancel."""
        self._closing = True
        subs = list(self._subs)
        if not drain:
            for s in subs:
                s._queue.clear()
        for s in subs:
            if s._wakeup is not None:
                s._wakeup.set()
        with anyio.move_on_after(timeout if drain else 0.5) as scope:
            for s in subs:
                if s._started:
                    await s._done.wait()
        if scope.cancelled_caught and self._tg is not None:
            log.warning("bus drain timed out; cancelling subscribers", timeout=timeout)
            self._tg.cancel_scope.cancel()
        self._tg = None
        self._token = None

    def stats(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "subscribers": [s.stats() for s in self._subs],
        }

