"""Events delivered per second through the bus, vs the same work as direct awaited calls.

Prints one line per case and the ratio bus/direct. Targets (issue 2): at least 100,000
events/s to 1 subscriber and 200,000 deliveries/s across 10 subscribers; exits 1 on a miss.
The two sides alternate which runs first in each of the three rounds.

    python bench/bus.py [--events N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.bus import EventBus
from core.events import Event


class Tick(Event, frozen=True, kw_only=True):
    n: int


async def through_bus(n_events: int, n_subs: int) -> float:
    counts = [0] * n_subs
    done = anyio.Event()

    def make(i: int):
        async def handler(e: Tick) -> None:
            counts[i] += 1
            if e.n == n_events - 1 and all(c == n_events for c in counts):
                done.set()

        return handler

    async with EventBus(default_maxsize=4096) as bus:
        for i in range(n_subs):
            bus.subscribe(Tick, make(i))
        events = [Tick(n=i) for i in range(n_events)]
        t0 = time.perf_counter()
        for e in events:
            await bus.publish(e)
        await done.wait()
        elapsed = time.perf_counter() - t0
    return n_events * n_subs / elapsed


async def direct(n_events: int, n_subs: int) -> float:
    counts = [0] * n_subs

    def make(i: int):
        async def handler(e: Tick) -> None:
            counts[i] += 1

        return handler

    handlers = [make(i) for i in range(n_subs)]
    events = [Tick(n=i) for i in range(n_events)]
    t0 = time.perf_counter()
    for e in events:
        for h in handlers:
            await h(e)
    return n_events * n_subs / (time.perf_counter() - t0)


async def main(n_events: int) -> int:
    targets = {1: 100_000, 10: 200_000}
    missed = []
    print(f"{'subscribers':>11} {'bus deliveries/s':>17} {'direct calls/s':>15} {'ratio':>6} {'target':>8}")
    for n_subs in (1, 10):
        await through_bus(n_events // 10, n_subs)  # warm-up
        bus_rates, direct_rates = [], []
        for rnd in range(3):
            # Alternate which side runs first so neither always gets the warmer (or quieter) slot.
            sides = [(through_bus, bus_rates), (direct, direct_rates)]
            for fn, out in (sides if rnd % 2 == 0 else sides[::-1]):
                out.append(await fn(n_events, n_subs))
        bus_rate, direct_rate = max(bus_rates), max(direct_rates)
        ok = bus_rate >= targets[n_subs]
        if not ok:
            missed.append(f"{n_subs} subscriber(s): {bus_rate:,.0f}/s < {targets[n_subs]:,}/s")
        print(f"{n_subs:>11} {bus_rate:>17,.0f} {direct_rate:>15,.0f} {bus_rate / direct_rate:>6.2f} "
              f"{targets[n_subs]:>8,} {'ok' if ok else 'MISSED'}")
    print("MISSED: " + "; ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    sys.exit(anyio.run(main, parser.parse_args().events))
