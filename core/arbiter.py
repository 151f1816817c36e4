"""One memory budget (a GPU, or system RAM) and the leases that hold it.

A model is resident only while it holds a ``Lease`` on its device's ``Arbiter``. A load
first ``reserve``s its estimated size: if it does not fit, idle unpinned leases are
evicted in the order an ``EvictionPolicy`` ranks them (never a busy or a pinned one); if
nothing can be freed, the request waits in a bounded queue and fails after a timeout
with a message naming what it needed, the budget and what holds it.

The arbiter only does the bookkeeping; the pool does the loading and unloading (it is
handed an ``evict`` callback), so the same arbiter drives real backends and the
benchmark's simulated ones. Time comes from an injectable clock so the benchmark can
replay traces in virtual time.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from .tools import ToolError
from .units import format_bytes


class PoolError(ToolError):
    """A model could not be made resident; the message says why and what to change."""


class PoolTimeout(PoolError):
    pass


class PoolCapacityError(PoolError):
    """The model can never fit: bigger than the budget (minus pinned models)."""


@dataclass
class ModelStats:
    """What the pool remembers about a model across loads (drives the eviction policy)."""

    uses: int = 0
    loads: int = 0
    last_request: float | None = None
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=32))  # recent times between requests
    load_seconds: float | None = None  # last measured load time: the cost of a reload

    def record_request(self, now: float) -> None:
        if self.last_request is not None:
            self.gaps.append(max(now - self.last_request, 0.0))
        self.last_request = now
        self.uses += 1

    def rate_interval(self, now: float, k: int = 8) -> float:
        """Mean seconds between requests over the last ``k`` requests, counting the open gap.

        The LRU-K backward distance: the span from the k-th last request to now divided by
        the gaps in it, an unbiased rate estimate for a Poisson stream that grows as the
        model stays idle. A model requested once is judged by twice its age.
        """
        gaps = list(self.gaps)[-(k - 1):]
        span = max(now - (self.last_request if self.last_request is not None else now), 0.0) + sum(gaps)
        return (span / len(gaps) if gaps else 2 * span) + 1e-3

    def time_to_next(self, now: float, prior_weight: float = 2.0) -> float:
        """Predicted seconds until the next request, from this model's own recent gaps.

        The mean of ``gap - age`` over the past gaps longer than the current idle time
        ``age`` (for a cycle that is when the next one is due; a burst's short gaps drop
        out once it is over), shrunk toward ``rate_interval`` as if that were
        ``prior_weight`` more such gaps. With many past gaps the residual dominates; with
        one or two (a model idle longer than nearly all of them) one lucky long gap no
        longer makes an idle model look due any moment, which made the policy evict a
        busy coordinator for a coder whose burst had ended.
        """
        age = max(now - (self.last_request if self.last_request is not None else now), 0.0)
        residual = [g - age for g in self.gaps if g > age]
        return (sum(residual) + prior_weight * self.rate_interval(now)) / (len(residual) + prior_weight) + 1e-3


@dataclass
class Lease:
    name: str
    device: str
    size: int
    pinned: bool = False
    priority: int = 0
    keep_alive: float = 300.0
    state: str = "loading"  # loading -> ready -> unloading (or crashed)
    users: int = 0
    handle: Any = None  # the backend's loaded object (inline) or the worker that holds it
    invoker: Any = None  # how capability handles reach the model (core.capabilities.Invoker)
    info: Any = None  # core.capabilities.ModelInfo, read at load
    error: BaseException | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    loaded_at: float | None = None  # wall time
    last_used: float = 0.0  # pool clock
    expires_at: float | None = None  # pool clock; None while busy or kept forever
    measured: int | None = None
    estimate: Any = None  # the MemoryEstimate this lease reserved
    reason: str = ""  # why it was loaded
    backend: str = ""
    placement: str = "inline"  # where it runs: "inline", "process" or "ray"
    node: str | None = None  # the Ray node it runs on (ray placement)

    def mark_unloading(self) -> None:
        if self.state != "unloading":
            self.state = "unloading"
            self.ready = anyio.Event()  # set again when the unload is done

    @property
    def idle(self) -> bool:
        return self.state == "ready" and self.users == 0

    @property
    def evictable(self) -> bool:
        return self.idle and not self.pinned


# --- eviction policies: rank(lease, stats, now) -> lower is evicted first ----------------


class EvictionPolicy:
    """Ranks idle leases; ``choose`` evicts the lowest ranked until the request fits."""

    name = "base"

    def rank(self, lease: Lease, stats: ModelStats, now: float) -> float:
        raise NotImplementedError

    def choose(self, candidates: list[Lease], need: int, stats: dict[str, ModelStats], now: float) -> list[Lease]:
        ranked = sorted(candidates, key=lambda le: self.rank(le, stats.setdefault(le.name, ModelStats()), now))
        chosen, freed = [], 0
        for le in ranked:
            if freed >= need:
                break
            chosen.append(le)
            freed += le.size
        # Put back any chosen lease that turned out not to be needed (largest first).
        for le in sorted(chosen, key=lambda x: -x.size):
            if freed - le.size >= need:
                chosen.remove(le)
                freed -= le.size
        return chosen


class LRUPolicy(EvictionPolicy):
    """Least recently used first."""

    name = "lru"

    def rank(self, lease: Lease, stats: ModelStats, now: float) -> float:
        return lease.last_used


class ShortestKeepAlivePolicy(EvictionPolicy):
    """Ollama-like: the model whose keep-alive runs out first goes first."""

    name = "ollama"

    def rank(self, lease: Lease, stats: ModelStats, now: float) -> float:
        return lease.expires_at if lease.expires_at is not None else math.inf


class CostAwarePolicy(EvictionPolicy):
    """Loom's policy: evict the set of idle models whose reloads are expected to cost least.

    Evicting a model costs its reload time, paid when it is next needed, so its value is
    ``reload_cost * 2**priority / t_next``: the reload seconds per second of idle time
    it is predicted to have (``ModelStats.time_to_next``: residual gaps for cycles and
    bursts, shrunk toward an LRU-K rate estimate for random use; the reload cost is the last
    measured load time, or the size at 1.5 GB/s before the first load). Among the sets
    of idle models that free enough memory, the one with the least total value goes
    (all subsets of up to 12 candidates; beyond that, greedily by value per byte). On a
    cycle over more models than fit this keeps the ones needed soonest, as Belady's
    optimum does, where LRU evicts exactly the one needed next; on a skewed mix it keeps
    the frequent ones; and it never frees 8 GiB where 2 GiB suffice.
    """

    name = "loom"
    load_rate = 1.5e9  # assumed bytes per second for a model never loaded yet
    exact_limit = 12

    def value(self, lease: Lease, stats: ModelStats, now: float) -> float:
        cost = stats.load_seconds if stats.load_seconds is not None else 0.05 + lease.size / self.load_rate
        if stats.last_request is None:
            stats.last_request = lease.last_used
        return cost * (2.0 ** lease.priority) / stats.time_to_next(now)

    def rank(self, lease: Lease, stats: ModelStats, now: float) -> float:
        return self.value(lease, stats, now) / max(lease.size, 1)

    def choose(self, candidates: list[Lease], need: int, stats: dict[str, ModelStats], now: float) -> list[Lease]:
        if len(candidates) > self.exact_limit:
            return super().choose(candidates, need, stats, now)
        values = [self.value(le, stats.setdefault(le.name, ModelStats()), now) for le in candidates]
        best: tuple[float, int] | None = None
        best_set: list[Lease] = []
        n = len(candidates)
        for mask in range(1, 1 << n):
            freed = total = 0.0
            for k in range(n):
                if mask >> k & 1:
                    freed += candidates[k].size
                    total += values[k]
            if freed >= need and (best is None or (total, freed) < best):
                best, best_set = (total, int(freed)), [candidates[k] for k in range(n) if mask >> k & 1]
        return best_set


POLICIES: dict[str, type[EvictionPolicy]] = {
    p.name: p for p in (CostAwarePolicy, LRUPolicy, ShortestKeepAlivePolicy)
}


# --- the arbiter ---------------------------------------------------------------------------


class Arbiter:
    def __init__(
        self,
        device: str,
        budget: int,
        *,
        policy: EvictionPolicy | None = None,
        queue_size: int = 32,
        clock: Callable[[], float] = time.monotonic,
        stats: dict[str, ModelStats] | None = None,
        budget_source: str = "config",
    ) -> None:
        self.device = device
        self.budget = int(budget)
        self.budget_source = budget_source
        self.policy = policy or CostAwarePolicy()
        self.queue_size = queue_size
        self.clock = clock
        self.stats = stats if stats is not None else {}
        self.leases: dict[str, Lease] = {}
        self.peak = 0
        self.waiting = 0
        self.io_lock = anyio.Lock()  # loads/unloads on this device run one at a time (clean measurements)
        self._claims: dict[str, int] = {}  # memory being freed by evictions, promised to a requester
        self._changed = anyio.Event()

    @property
    def used(self) -> int:
        return sum(le.size for le in self.leases.values())

    def free_for(self, name: str) -> int:
        return self.budget - self.used - sum(v for k, v in self._claims.items() if k != name)

    def notify(self) -> None:
        """Something was released: wake the waiters so they look again."""
        self._changed.set()
        self._changed = anyio.Event()

    def release(self, lease: Lease) -> None:
        if self.leases.get(lease.name) is lease:
            del self.leases[lease.name]
            self.notify()

    def holders(self) -> str:
        if not self.leases:
            return "nothing"
        parts = []
        for le in sorted(self.leases.values(), key=lambda x: -x.size):
            why = "pinned" if le.pinned else (f"busy, {le.users} request(s)" if le.users else le.state)
            parts.append(f"{le.name} {format_bytes(le.size)} ({why})")
        return ", ".join(parts)

    def describe_need(self, lease: Lease) -> str:
        return (f"model {lease.name!r} needs {format_bytes(lease.size)} on {self.device}; the budget is "
                f"{format_bytes(self.budget)} ({self.budget_source}), {format_bytes(max(self.free_for(lease.name), 0))}"
                f" free; held by: {self.holders()}")

    def choose_victims(self, lease: Lease, now: float) -> list[Lease] | None:
        """The idle leases to evict so ``lease`` fits, cheapest first; None if it cannot."""
        need = lease.size - self.free_for(lease.name)
        if need <= 0:
            return []
        candidates = [le for le in self.leases.values() if le.evictable and le.name != lease.name]
        if sum(le.size for le in candidates) < need:
            return None
        return self.policy.choose(candidates, need, self.stats, now)

    async def reserve(
        self,
        lease: Lease,
        *,
        timeout: float,
        evict: Callable[[Lease, Lease], Awaitable[None]],
        on_wait: Callable[[Lease, str], Awaitable[None]] | None = None,
    ) -> float:
        """Make room for ``lease`` and record it; returns the seconds spent waiting."""
        pinned = sum(le.size for le in self.leases.values() if le.pinned and le.name != lease.name)
        if lease.size > self.budget - pinned:
            extra = f" (pinned models hold {format_bytes(pinned)})" if pinned else ""
            raise PoolCapacityError(
                f"{self.describe_need(lease)}. It can never fit{extra}: raise the budget in [pool] "
                f"({'ram_budget' if self.device == 'cpu' else 'gpu_budget'}), lower context_size, or choose a "
                f"smaller model")
        start = self.clock()
        deadline = anyio.current_time() + timeout
        waited = False
        try:
            while True:
                victims = self.choose_victims(lease, self.clock())
                if victims == []:
                    self.leases[lease.name] = lease
                    self.peak = max(self.peak, self.used)
                    return self.clock() - start if waited else 0.0
                if victims:
                    self._claims[lease.name] = lease.size
                    for v in victims:
                        v.mark_unloading()
                    for v in victims:
                        await evict(v, lease)
                    continue
                if self.waiting >= self.queue_size:
                    raise PoolTimeout(f"{self.describe_need(lease)}. The wait queue is full "
                                      f"({self.queue_size} waiting); try again later")
                if on_wait is not None and not waited:
                    await on_wait(lease, self.describe_need(lease))
                waited = True
                changed = self._changed
                self.waiting += 1
                try:
                    with anyio.move_on_after(deadline - anyio.current_time()):
                        await changed.wait()
                finally:
                    self.waiting -= 1
                if anyio.current_time() >= deadline and not changed.is_set():
                    raise PoolTimeout(f"gave up after waiting {timeout:g}s: {self.describe_need(lease)}. "
                                      f"Wait for those requests to finish, unload a model (loom models unload "
                                      f"NAME), or raise [pool] queue_timeout")
        finally:
            self._claims.pop(lease.name, None)

    def snapshot(self) -> dict[str, Any]:
        return {"device": self.device, "budget": self.budget, "budget_source": self.budget_source,
                "used": self.used, "peak": self.peak, "waiting": self.waiting, "policy": self.policy.name}
