"""How close can any online eviction policy get to Belady on the Zipf trace?

``bench/pool_sim.py`` holds Loom to at most 1.15x Belady's seconds loading on each
trace. On ``zipf6`` (requests drawn independently from a fixed popularity) the best
an online policy can do is known: if it knew the popularities in advance, the policy
that minimises the expected seconds loading per request solves a small Markov
decision process over resident sets (at each miss, which of the sets that keep the
requested model and fit to move to). This script replays every draw of the trace with
that policy, given each model's true share of the requests, next to Loom's (which has
to learn the shares as it goes), Belady's and the exact offline optimum, and counts
the draws over 1.15x Belady for each. No online policy can beat the known-popularity
one on average, so the draws where it misses are draws where the target cannot be
met by any online policy.

Target (issue 17, as agreed: zipf6 is judged on the mean over seeds 1-30, the same check
``pool_sim.py`` makes): Loom's mean seconds loading over the draws <= 1.15x Belady's; exits 1
on a miss. The per-draw counts, the draws where Loom is over 1.15x but the known-popularity
policy is not, and Loom's mean against the known-popularity policy's are printed to show
how far Loom is from the best an online policy can do, not judged.

Run: ``python bench/pool_bound.py --seeds 1-30``
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pool_sim as sim

from core.arbiter import CostAwarePolicy, EvictionPolicy, Lease, ModelStats


def solve(trace: sim.Trace, share: dict[str, float], iterations: int = 400) -> dict[int, float]:
    """Relative value iteration: the long-run extra seconds loading from each resident set."""
    n = len(trace.models)
    fits = sim.resident_sets(trace)
    moves = {(s, k): [t for t in fits if t >> k & 1 and (t & ~(1 << k)) & ~s == 0]
             for s in fits for k in range(n) if not s >> k & 1}
    p = [share.get(m.name, 0.0) for m in trace.models]
    cost = [sim.load_cost(m.size_gib) for m in trace.models]
    value = dict.fromkeys(fits, 0.0)
    for _ in range(iterations):
        new = {}
        for s in fits:
            new[s] = sum(p[k] * (value[s] if s >> k & 1 else cost[k] + min(value[t] for t in moves[(s, k)]))
                         for k in range(n))
        base = new[fits[0]]
        value = {s: v - base for s, v in new.items()}
    return value


class KnownPopularityPolicy(EvictionPolicy):
    """The optimal online policy for independent requests, told the true popularity."""

    name = "known"

    def __init__(self, trace: sim.Trace) -> None:
        counts = Counter(name for _t, name, _s in trace.requests)
        self.value = solve(trace, {m: c / len(trace.requests) for m, c in counts.items()})
        self.bit = {m.name: 1 << k for k, m in enumerate(trace.models)}
        self.requests = trace.requests
        self.position = 0  # set by the replay loop: whose miss this is

    def choose(self, candidates: list[Lease], need: int, stats: dict[str, ModelStats], now: float) -> list[Lease]:
        held = sum(self.bit[le.name] for le in candidates)  # requests are served one at a time: all idle
        want = self.bit[self.requests[self.position][1]]
        keep = min((t for t in self.value if t & want and (t & ~want) & ~held == 0), key=self.value.__getitem__)
        return [le for le in candidates if not keep & self.bit[le.name]]


async def main(seeds: list[int]) -> int:
    sim.configure_logging("error", "console")
    sim.core_pool_quiet()
    print("zipf6, seconds loading / Belady's (* = over 1.15x)")
    print(f"{'seed':>4} {'optimum':>8} {'known popularity':>17} {'loom':>7}")
    over = {"known": 0, "loom": 0}
    reachable_misses = []  # draws where Loom is over 1.15x but the known-popularity policy is not
    ratios: dict[str, list[float]] = {"optimum": [], "known": [], "loom": []}
    for seed in seeds:
        trace = next(t for t in sim.draw(seed) if t.name == "zipf6")
        belady = (await sim.run(trace, sim.BeladyPolicy(trace)))["load_s"]
        row = {"optimum": sim.offline_optimum(trace) / belady,
               "known": (await sim.run(trace, KnownPopularityPolicy(trace)))["load_s"] / belady,
               "loom": (await sim.run(trace, CostAwarePolicy()))["load_s"] / belady}
        for k, r in row.items():
            ratios[k].append(r)
        marks = {k: "*" if row[k] > 1.15 + 1e-9 else " " for k in over}
        for k in over:
            over[k] += marks[k] == "*"
        if marks["loom"] == "*" and marks["known"] == " ":
            reachable_misses.append(seed)
        print(f"{seed:>4} {row['optimum']:8.2f} {row['known']:16.2f}{marks['known']} {row['loom']:6.2f}{marks['loom']}")
    print(f"mean {statistics.mean(ratios['optimum']):8.2f} {statistics.mean(ratios['known']):16.2f}  "
          f"{statistics.mean(ratios['loom']):6.2f}")
    print(f"over 1.15x Belady: known popularity {over['known']} of {len(seeds)} draws, Loom {over['loom']}; "
          f"Loom over where the known-popularity policy is not: seeds "
          f"{', '.join(map(str, reachable_misses)) or 'none'}")
    loom_mean, known_mean = statistics.mean(ratios["loom"]), statistics.mean(ratios["known"])
    print(f"Loom's mean / the known-popularity policy's mean: {loom_mean / known_mean:.3f}")
    if loom_mean > 1.15 + 1e-9:
        print(f"MISSED: Loom's mean over the draws {loom_mean:.3f}x Belady > 1.15x")
        return 1
    print(f"target met: Loom's mean over the draws {loom_mean:.3f}x Belady <= 1.15x")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=sim.seed_range, default=sim.seed_range("1-30"))
    sys.exit(anyio.run(main, ap.parse_args().seeds))
