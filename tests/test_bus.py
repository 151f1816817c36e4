"""The event bus: type filtering, ordering, isolation, backpressure, quarantine, shutdown."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from core.bus import EventBus
from core.events import Event, PluginFailed

pytestmark = pytest.mark.anyio


class Ping(Event, frozen=True, kw_only=True):
    n: int


class LoudPing(Ping, frozen=True, kw_only=True):
    volume: int = 11


class Other(Event, frozen=True, kw_only=True):
    pass


async def test_subscribers_receive_by_type_and_subtypes_in_order():
    got_ping: list[int] = []
    got_all: list[str] = []
    async with EventBus() as bus:
        bus.subscribe(Ping, lambda e: got_ping.append(e.n))
        bus.subscribe(Event, lambda e: got_all.append(type(e).__name__))
        for i in range(500):
            await bus.publish(LoudPing(n=i) if i % 2 else Ping(n=i))
        await bus.publish(Other())
    assert got_ping == list(range(500)), "a base type receives subtypes, in publish order"
    assert got_all[-1] == "Other" and len(got_all) == 501


async def test_raising_subscriber_is_reported_and_quarantined_while_others_keep_receiving():
    good: list[int] = []
    failures: list[PluginFailed] = []

    def bad(e: Ping) -> None:
        raise RuntimeError(f"boom {e.n}")

    async with EventBus() as bus:
        sub = bus.subscribe(Ping, bad, name="bad", plugin="flaky", max_failures=3)
        bus.subscribe(Ping, lambda e: good.append(e.n))
        bus.subscribe(PluginFailed, failures.append)
        for i in range(10):
            await bus.publish(Ping(n=i))
    assert good == list(range(10))
    assert sub.quarantined and sub not in bus.subscriptions
    assert sub.failures == 3, "after quarantine it receives nothing more"
    assert [f.plugin for f in failures] == ["flaky"] * 3
    assert failures[-1].quarantined and "boom 2" in failures[-1].error


async def test_a_subscriber_failing_on_failure_reports_does_not_loop():
    calls = 0

    def hates_failures(e: PluginFailed) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("no")

    async with EventBus() as bus:
        bus.subscribe(PluginFailed, hates_failures, max_failures=100)
        bus.subscribe(Ping, lambda e: 1 / 0, max_failures=100)
        await bus.publish(Ping(n=1))
        await anyio.sleep(0.05)
    assert calls == 1


async def test_async_subscriber_is_isolated_from_a_slow_one():
    fast: list[int] = []
    slow_started = anyio.Event()
    release = anyio.Event()

    async def slow(e: Ping) -> None:
        slow_started.set()
        await release.wait()

    async with EventBus() as bus:
        bus.subscribe(Ping, slow, maxsize=1000)
        bus.subscribe(Ping, lambda e: fast.append(e.n))
        for i in range(100):
            await bus.publish(Ping(n=i))
        await slow_started.wait()
        with anyio.fail_after(2):
            while len(fast) < 100:  # noqa: ASYNC110 - polling a plain list is the point
                await anyio.sleep(0.01)
        release.set()
    assert fast == list(range(100))


async def test_block_policy_applies_backpressure_then_drops_after_timeout():
    release = anyio.Event()
    seen: list[int] = []

    async def stuck(e: Ping) -> None:
        await release.wait()
        seen.append(e.n)

    async with EventBus() as bus:
        sub = bus.subscribe(Ping, stuck, maxsize=2, overflow="block", block_timeout=0.2)
        await bus.publish(Ping(n=0))  # taken by the consumer, which then blocks
        await anyio.sleep(0.05)
        await bus.publish(Ping(n=1))
        await bus.publish(Ping(n=2))  # mailbox now full (2)
        t0 = anyio.current_time()
        await bus.publish(Ping(n=3))  # waits block_timeout, then drops
        waited = anyio.current_time() - t0
        assert waited >= 0.15, "the publisher was held back"
        assert sub.dropped == 1
        release.set()
    assert seen == [0, 1, 2]


async def test_block_policy_waits_for_room_without_losing_events():
    got: list[int] = []

    async def slowish(e: Ping) -> None:
        await anyio.lowlevel.checkpoint()
        got.append(e.n)

    async with EventBus() as bus:
        sub = bus.subscribe(Ping, slowish, maxsize=4, overflow="block", block_timeout=5)
        for i in range(200):
            await bus.publish(Ping(n=i))
    assert got == list(range(200)) and sub.dropped == 0


@pytest.mark.parametrize(("policy", "expected"), [("drop_newest", [0, 1, 2]), ("drop_oldest", [0, 8, 9])])
async def test_drop_policies(policy: str, expected: list[int]):
    release = anyio.Event()
    seen: list[int] = []

    async def stuck(e: Ping) -> None:
        await release.wait()
        seen.append(e.n)

    async with EventBus() as bus:
        sub = bus.subscribe(Ping, stuck, maxsize=2, overflow=policy)
        await bus.publish(Ping(n=0))
        await anyio.sleep(0.05)
        for i in range(1, 10):
            await bus.publish(Ping(n=i))
        assert sub.dropped == 7
        release.set()
    assert seen == expected


async def test_shutdown_drains_queued_events():
    seen: list[int] = []

    async def handler(e: Ping) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(e.n)

    async with EventBus() as bus:
        bus.subscribe(Ping, handler, maxsize=10_000)
        for i in range(1000):
            bus.publish_nowait(Ping(n=i))
    assert seen == list(range(1000))


async def test_shutdown_cancels_a_subscriber_that_never_finishes():
    async def forever(e: Ping) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with EventBus() as bus:
            bus.subscribe(Ping, forever)
            await bus.publish(Ping(n=1))
            await anyio.sleep(0.01)
            await bus.aclose(timeout=0.1)


async def test_subscribe_after_start_and_unsubscribe():
    seen: list[int] = []
    async with EventBus() as bus:
        await bus.publish(Ping(n=0))
        sub = bus.subscribe(Ping, lambda e: seen.append(e.n))
        await bus.publish(Ping(n=1))
        await anyio.sleep(0.01)
        bus.unsubscribe(sub)
        await bus.publish(Ping(n=2))
    assert seen == [1]


async def test_publish_from_a_worker_thread():
    seen: list[int] = []
    async with EventBus() as bus:
        bus.subscribe(Ping, lambda e: seen.append(e.n))
        await anyio.to_thread.run_sync(lambda: [bus.publish_threadsafe(Ping(n=i)) for i in range(5)])
    assert seen == [0, 1, 2, 3, 4]


def test_bad_subscriptions_are_refused():
    bus = EventBus()
    with pytest.raises(TypeError):
        bus.subscribe(int, print)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overflow"):
        bus.subscribe(Ping, print, overflow="explode")  # type: ignore[arg-type]
