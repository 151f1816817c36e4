"""Replay request traces against a memory budget with the real pool and arbiter.

Each model is served by a simulated backend whose ``load`` costs virtual seconds
(0.3 s + 0.8 s per GiB, about what a local NVMe gives), so a whole run takes seconds
of real time. Requests are served one after another in arrival order; a request's wait
is the time from its arrival until its model is ready (queueing behind earlier requests
plus any load). Per trace and policy the table shows loads, evictions, seconds spent
loading, p95 wait and peak reserved memory, and the ratio of seconds loading against
Belady's offline policy (which evicts the model whose next request is furthest away).
Belady's rule is optimal only when every model has the same size and load cost; the
``optimum`` row is the exact offline minimum (a shortest path over resident sets), to
show how far Belady itself is from it on traces with mixed sizes.

Traces:
  speech+vision  a pinned speech model, a chat model after each utterance, and
                 on-demand vision bursts after pauses
  coord+bursts   a coordinator used all the time with bursts of coder and image-gen
  zipf6          a Zipf(1.1) mix over six models from 1 to 8 GiB
  cycle          an adversarial cycle over one model more than the budget holds

Run: ``python bench/pool_sim.py`` (``--seed N`` for another draw of the random traces,
``--seeds 1-10`` for a summary row per seed and the mean per trace). How close any online
policy can get on the Zipf trace: ``bench/pool_bound.py``.

Targets (from the issue): Loom <= 1.15x Belady's seconds loading, never worse than LRU or
Ollama-like, peak memory never over budget. The structured traces are held to them on
each draw. ``zipf6`` (requests drawn independently from a fixed popularity) is held to them
on the mean over seeds 1-30 (``ZIPF_SEEDS``), as agreed for issue 17: on single draws even
a policy told the true popularities misses 1.15x Belady on 5 of 30 (``pool_bound.py``), so
one draw measures the draw's luck more than the policy. Its budget is checked on every draw.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.app import Loom
from core.arbiter import CostAwarePolicy, EvictionPolicy, LRUPolicy, ModelStats, ShortestKeepAlivePolicy
from core.backends import MemoryEstimate, ModelBackend, ModelSpec
from core.config import LoomConfig, ModelConfig, PoolConfig
from core.hookspecs import hookimpl
from core.logging import configure as configure_logging
from core.pool import ModelEvicted, ModelLoaded, ModelPool

GiB = 1024**3


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = VirtualClock()


def load_cost(size_gib: float) -> float:
    return 0.3 + 0.8 * size_gib


class SimBackend(ModelBackend):
    """A fake backend (nothing to load here): ``load`` only advances the virtual clock."""

    name = "sim"

    def estimate(self, spec: ModelSpec, device: str) -> MemoryEstimate:
        return MemoryEstimate(total=int(spec.config.options["size_gib"] * GiB), device=device)

    def load(self, spec: ModelSpec, device: str) -> object:
        CLOCK.now += load_cost(spec.config.options["size_gib"])
        return object()

    def unload(self, handle: object) -> None:
        pass


class SimPlugin:
    @hookimpl
    def loom_register_backends(self, register):
        register("sim", SimBackend)


@dataclass
class Model:
    name: str
    size_gib: float
    keep_alive: float = 1800.0
    pin: bool = False
    priority: int = 0


@dataclass
class Trace:
    name: str
    budget_gib: float
    models: list[Model]
    requests: list[tuple[float, str, float]]  # (arrival, model, service seconds)


class BeladyPolicy(EvictionPolicy):
    """Offline optimum (for equal sizes): evict the model whose next request is furthest.

    Positions in the trace, not times: under a backlog, requests that already arrived
    but wait to be served are still the future.
    """

    name = "belady"

    def __init__(self, trace: Trace) -> None:
        self.position = 0  # index of the request being served, set by the replay loop
        self.uses: dict[str, list[int]] = {}
        for i, (_t, m, _s) in enumerate(trace.requests):
            self.uses.setdefault(m, []).append(i)

    def rank(self, lease, stats: ModelStats, now: float) -> float:
        uses = self.uses.get(lease.name, [])
        i = bisect.bisect_right(uses, self.position)
        return -(uses[i] if i < len(uses) else float("inf"))


def resident_sets(trace: Trace) -> list[int]:
    """Every set of the trace's models (bit k: model k) that fits the budget with the pinned ones."""
    n = len(trace.models)
    pinned = sum(1 << k for k, m in enumerate(trace.models) if m.pin)
    return [s for s in range(1 << n) if s & pinned == pinned
            and sum(m.size_gib for k, m in enumerate(trace.models) if s >> k & 1) <= trace.budget_gib + 1e-9]


def offline_optimum(trace: Trace) -> float:
    """The least seconds loading any policy can achieve knowing the whole trace.

    Requests are served one at a time, so a policy is a choice, at each miss, of which
    resident set to keep (evicting is free, loading costs ``load_cost``): a shortest
    path over (request, resident set), exact for a handful of models. Keep-alive is
    ignored, as for Belady.
    """
    sizes = [m.size_gib for m in trace.models]
    index = {m.name: k for k, m in enumerate(trace.models)}
    pinned = sum(1 << k for k, m in enumerate(trace.models) if m.pin)
    fits = resident_sets(trace)
    best = {pinned: 0.0}  # resident set -> least seconds loading to reach it
    for _t, name, _s in trace.requests:
        r, cost = 1 << index[name], load_cost(sizes[index[name]])
        step: dict[int, float] = {}
        for held, spent in best.items():
            if held & r:
                step[held] = min(step.get(held, math.inf), spent)
                continue
            for keep in fits:  # load r, keeping any subset of what was resident
                if keep & r and (keep & ~r) & ~held == 0:
                    step[keep] = min(step.get(keep, math.inf), spent + cost)
        best = step
    return min(best.values())


# --- traces ------------------------------------------------------------------------------


def speech_vision(rng: random.Random) -> Trace:
    models = [Model("whisper", 1.0, pin=True), Model("chat", 3.0, keep_alive=600), Model("tts", 1.0, keep_alive=900),
              Model("vlm", 4.0, keep_alive=300), Model("embed", 0.5, keep_alive=3600)]
    reqs, t = [], 0.0
    for _ in range(40):
        for _ in range(rng.randint(2, 6)):  # a conversation: speech, then the chat model answers
            t += rng.uniform(3, 15)
            reqs.append((t, "whisper", 0.5))
            reqs.append((t + 0.5, "chat", rng.uniform(1, 4)))
            if rng.random() < 0.7:
                reqs.append((t + 0.7, "tts", 0.5))
            if rng.random() < 0.3:
                reqs.append((t + 0.6, "embed", 0.1))
        t += rng.uniform(30, 240)  # a pause, then some pictures
        for _ in range(rng.randint(1, 4)):
            t += rng.uniform(2, 10)
            reqs.append((t, "vlm", rng.uniform(2, 6)))
    return Trace("speech+vision", 8.5, models, sorted(reqs))


def coord_bursts(rng: random.Random) -> Trace:
    models = [Model("coordinator", 5.0, keep_alive=1800, priority=1), Model("coder", 6.0, keep_alive=600),
              Model("imagegen", 8.0, keep_alive=300)]
    reqs, t = [], 0.0
    for _ in range(50):
        t += rng.uniform(5, 60)
        reqs.append((t, "coordinator", 1.0))
        burst = "coder" if rng.random() < 0.6 else "imagegen"
        for _ in range(rng.randint(1, 5)):
            t += rng.uniform(2, 8)
            reqs.append((t, burst, rng.uniform(3, 10)))
            reqs.append((t + 0.1, "coordinator", 0.5))
    return Trace("coord+bursts", 16.0, models, sorted(reqs))


def zipf6(rng: random.Random) -> Trace:
    sizes = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
    names = [f"m{int(s)}g" for s in sizes]
    order = names[:]
    rng.shuffle(order)  # popularity independent of size
    weights = [1 / (k + 1) ** 1.1 for k in range(len(order))]
    models = [Model(n, s, keep_alive=rng.choice([300.0, 600.0, 1800.0])) for n, s in zip(names, sizes, strict=True)]
    reqs, t = [], 0.0
    for _ in range(400):
        t += rng.expovariate(1 / 8)
        reqs.append((t, rng.choices(order, weights)[0], rng.uniform(0.5, 3)))
    return Trace("zipf6", 14.0, models, reqs)


def cycle(rng: random.Random) -> Trace:
    models = [Model(f"c{i}", 4.0, keep_alive=600 + 60 * i) for i in range(4)]  # the budget holds 3
    reqs, t = [], 0.0
    for k in range(200):
        t += rng.uniform(1, 5)
        reqs.append((t, f"c{k % 4}", 1.0))
    return Trace("cycle", 12.0, models, reqs)


# --- running ---------------------------------------------------------------------------


async def run(trace: Trace, policy: EvictionPolicy) -> dict:
    CLOCK.now = 0.0
    online = not isinstance(policy, BeladyPolicy)
    # inline: the simulated backend lives in this script, which a worker process cannot import
    models = {m.name: ModelConfig(backend="sim", placement="inline", pin=m.pin, priority=m.priority,
                                  options={"size_gib": m.size_gib}, keep_alive=m.keep_alive if online else -1.0)
              for m in trace.models}
    cfg = LoomConfig(models=models, pool=PoolConfig(ram_budget=int(trace.budget_gib * GiB)))
    cfg.logging.level = "error"
    app = Loom.create(cfg, environ={"LOOM_PLUGINS": "sim", "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1"},
                      plugins={"sim": SimPlugin()}, configure_logs=False)
    app.bus.recent = deque(maxlen=100_000)  # keep every event of the run for counting
    pool = app._pool = ModelPool(app, clock=CLOCK, policy=policy)
    waits: list[float] = []
    async with app:
        CLOCK.now = 0.0  # pinned models were loaded at start: not part of the trace
        loads_at_start = sum(isinstance(e, ModelLoaded) for e in app.bus.recent)
        for i, (arrival, name, service) in enumerate(trace.requests):
            if hasattr(policy, "position"):  # offline or trace-aware policies
                policy.position = i
            CLOCK.now = max(CLOCK.now, arrival)
            async with pool.use(name):
                waits.append(CLOCK.now - arrival)
                CLOCK.now += service
        arb = pool.arbiter("cpu")
        peak = arb.peak
        loaded = [e for e in app.bus.recent if isinstance(e, ModelLoaded)][loads_at_start:]
        evicted = sum(isinstance(e, ModelEvicted) for e in app.bus.recent)
    waits.sort()
    sizes = {m.name: m.size_gib for m in trace.models}
    return {"loads": len(loaded), "evictions": evicted, "load_s": sum(load_cost(sizes[e.model]) for e in loaded),
            "p95": waits[int(0.95 * (len(waits) - 1))], "peak": peak / GiB, "budget": trace.budget_gib}


TOL = 1e-6  # seconds: sums of the same loads in another order differ in the last bits
ZIPF_SEEDS = range(1, 31)  # zipf6 is judged on the mean over these draws (see the docstring)
PER_DRAW_EXEMPT = {"zipf6"}


def verdict(r: dict[str, dict], *, loading: bool = True) -> list[str]:
    """The targets Loom misses on one trace (empty: all met); ``loading=False``: the budget only."""
    loom, best = r["loom"]["load_s"], r["belady"]["load_s"]
    missed = []
    if loading and loom > 1.15 * best + TOL:
        missed.append(f"loading {loom / best:.2f}x Belady > 1.15x")
    for base, label in (("lru", "LRU"), ("ollama", "Ollama-like")):
        if loading and loom > r[base]["load_s"] + TOL:
            missed.append(f"worse than {label} ({loom / r[base]['load_s']:.2f}x)")
    missed += [f"{p} peak over budget" for p, x in r.items() if x["peak"] > x["budget"] + 1e-9]
    return missed


def mean_verdict(draws: list[dict[str, dict]]) -> tuple[dict[str, float], list[str]]:
    """Mean ratios of Loom's seconds loading over several draws of one trace, and the targets missed.

    Each draw counts once, whatever its length: the mean of the per-draw ratios.
    """
    means = {base: statistics.mean(d["loom"]["load_s"] / d[base]["load_s"] for d in draws)
             for base in ("belady", "lru", "ollama")}
    missed = []
    if means["belady"] > 1.15 + TOL:
        missed.append(f"mean loading {means['belady']:.3f}x Belady > 1.15x")
    for base, label in (("lru", "LRU"), ("ollama", "Ollama-like")):
        if means[base] > 1 + TOL:
            missed.append(f"mean loading {means[base]:.3f}x {label} > 1")
    return means, missed


async def replay_trace(name: str, seed: int) -> dict[str, dict]:
    trace = next(t for t in draw(seed) if t.name == name)
    return {p.name: await run(trace, p) for p in
            (BeladyPolicy(trace), CostAwarePolicy(), LRUPolicy(), ShortestKeepAlivePolicy())}


def draw(seed: int) -> list[Trace]:
    rng = random.Random(seed)
    return [speech_vision(rng), coord_bursts(rng), zipf6(rng), cycle(rng)]


async def replay(seed: int) -> dict[str, dict[str, dict]]:
    out = {}
    for trace in draw(seed):
        out[trace.name] = {p.name: await run(trace, p) for p in
                           (BeladyPolicy(trace), CostAwarePolicy(), LRUPolicy(), ShortestKeepAlivePolicy())}
    return out


def core_pool_quiet() -> None:
    import core.pool

    core.pool.gc.collect = lambda *a: 0  # the pool collects after each unload; nothing to collect here


async def main(seed: int, seeds: list[int] | None) -> int:
    configure_logging("error", "console")
    core_pool_quiet()
    if seeds:
        return await summary(seeds)
    ok = True
    optimum = {t.name: offline_optimum(t) for t in draw(seed)}
    print(f"{'trace':14} {'policy':7} {'loads':>6} {'evict':>6} {'s loading':>10} {'p95 wait':>9} "
          f"{'peak GiB':>9} {'vs Belady':>9}")
    for tname, results in (await replay(seed)).items():
        best = results["belady"]["load_s"] or 1e-9
        for name, r in results.items():
            print(f"{tname:14} {name:7} {r['loads']:6d} {r['evictions']:6d} {r['load_s']:10.1f} "
                  f"{r['p95']:9.2f} {r['peak']:9.2f} {r['load_s'] / best:9.2f}")
        print(f"{tname:14} {'optimum':7} {'':6} {'':6} {optimum[tname]:10.1f} {'':9} {'':9} "
              f"{optimum[tname] / best:9.2f}")
        loom = results["loom"]["load_s"]
        per_draw = tname not in PER_DRAW_EXEMPT
        missed = verdict(results, loading=per_draw)
        ok &= not missed
        note = "" if per_draw else f" (loading judged on the mean over seeds {ZIPF_SEEDS[0]}-{ZIPF_SEEDS[-1]}, below)"
        print(f"{'':14} Loom/Belady {loom / best:.2f}  Loom/LRU {loom / (results['lru']['load_s'] or 1e-9):.2f}  "
              f"Loom/Ollama-like {loom / (results['ollama']['load_s'] or 1e-9):.2f}  "
              f"{'targets met' if not missed else 'MISSED: ' + '; '.join(missed)}{note}")
    for tname in sorted(PER_DRAW_EXEMPT):
        draws = [await replay_trace(tname, s) for s in ZIPF_SEEDS]
        over = [f"seed {s}" for s, d in zip(ZIPF_SEEDS, draws, strict=True) if verdict(d, loading=False)]
        means, missed = mean_verdict(draws)
        missed += [f"over budget on {', '.join(over)}"] if over else []
        ok &= not missed
        print(f"{tname:14} mean over seeds {ZIPF_SEEDS[0]}-{ZIPF_SEEDS[-1]}: Loom/Belady {means['belady']:.3f}  "
              f"Loom/LRU {means['lru']:.3f}  Loom/Ollama-like {means['ollama']:.3f}  "
              f"{'targets met' if not missed else 'MISSED: ' + '; '.join(missed)}")
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


async def summary(seeds: list[int]) -> int:
    """One row per seed: Loom/Belady and Loom/min(LRU, Ollama-like) per trace, misses marked ``*``
    (zipf6: ``*`` marks a draw over 1.15x for information; its targets hold on the mean)."""
    rows = {s: await replay(s) for s in seeds}
    names = list(rows[seeds[0]])
    print("Loom/Belady | Loom/best-of(LRU, Ollama-like) per trace; * = a target missed")
    print(f"{'seed':>4} " + " ".join(f"{n:>19}" for n in names))
    misses = 0
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for s, res in rows.items():
        cells = []
        for n in names:
            r = res[n]
            loom = r["loom"]["load_s"]
            bad = verdict(r)
            misses += bool(verdict(r, loading=n not in PER_DRAW_EXEMPT))
            ratios[n].append(loom / r["belady"]["load_s"])
            cells.append(f"{loom / r['belady']['load_s']:.2f} | "
                         f"{loom / min(r['lru']['load_s'], r['ollama']['load_s']):.2f}{'*' if bad else ' '}".rjust(19))
        print(f"{s:>4} " + " ".join(cells))
    print("mean " + " ".join(f"{statistics.mean(ratios[n]):.2f}".rjust(19) for n in names))
    for n in sorted(PER_DRAW_EXEMPT):
        means, missed = mean_verdict([rows[s][n] for s in seeds])
        misses += bool(missed)
        print(f"{n} on the mean over these {len(seeds)} seeds: Loom/Belady {means['belady']:.3f}, "
              f"Loom/LRU {means['lru']:.3f}, Loom/Ollama-like {means['ollama']:.3f}: "
              f"{'met' if not missed else 'MISSED: ' + '; '.join(missed)}")
    print(f"{misses} target checks missed ({len(seeds)} draws of the structured traces judged one by one, "
          f"{', '.join(sorted(PER_DRAW_EXEMPT))} on the mean)")
    return 0 if not misses else 1


def seed_range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} holds no seed: write LOW-HIGH with LOW <= HIGH")
    return seeds


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--seeds", type=seed_range, help="a range like 1-10: one summary row per seed")
    args = ap.parse_args()
    sys.exit(anyio.run(main, args.seed, args.seeds))
