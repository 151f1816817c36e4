"""bench/pool_sim.py's policy comparison on a few seeds: the qualitative claims, no timing.

The simulator replays request traces through the real pool and arbiter on a virtual clock
(loads cost virtual seconds), so this runs in a few seconds. Claims checked, per seed:
no policy ever reserves more than the budget; on the structured traces (speech+vision,
coord+bursts, cycle) Loom's cost-aware policy loads no more seconds than LRU or the
Ollama-like policy and stays within 1.15x Belady's offline policy. The random Zipf mix is
not claimed (docs/benchmarks.md: no online policy reliably beats LRU there; see
bench/pool_bound.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (1, 2, 3)
CLAIMED = ("speech+vision", "coord+bursts", "cycle")
TOL = 1e-6


def load_sim():
    spec = importlib.util.spec_from_file_location("bench_pool_sim", ROOT / "bench" / "pool_sim.py")
    sim = importlib.util.module_from_spec(spec)
    sys.modules["bench_pool_sim"] = sim
    try:
        spec.loader.exec_module(sim)
    finally:
        sys.modules.pop("bench_pool_sim", None)
    return sim


@pytest.fixture(scope="module")
def replays() -> dict[int, dict]:
    sim = load_sim()
    import core.pool

    collect = core.pool.gc.collect
    core.pool.gc.collect = lambda *a: 0  # the pool collects after each unload; nothing to collect here
    try:
        return {seed: anyio.run(sim.replay, seed) for seed in SEEDS}
    finally:
        core.pool.gc.collect = collect


def test_every_trace_and_policy_ran(replays) -> None:
    for res in replays.values():
        assert set(res) == {"speech+vision", "coord+bursts", "zipf6", "cycle"}
        for policies in res.values():
            assert set(policies) == {"belady", "loom", "lru", "ollama"}
            assert all(r["loads"] > 0 for r in policies.values())


def test_no_policy_ever_goes_over_the_memory_budget(replays) -> None:
    for seed, res in replays.items():
        for trace, policies in res.items():
            for policy, r in policies.items():
                assert r["peak"] <= r["budget"] + 1e-9, (seed, trace, policy, r)


@pytest.mark.parametrize("trace", CLAIMED)
def test_loom_loads_no_more_than_lru_or_ollama_like(replays, trace) -> None:
    for seed, res in replays.items():
        r = res[trace]
        assert r["loom"]["load_s"] <= r["lru"]["load_s"] + TOL, (seed, r["loom"], r["lru"])
        assert r["loom"]["load_s"] <= r["ollama"]["load_s"] + TOL, (seed, r["loom"], r["ollama"])


@pytest.mark.parametrize("trace", CLAIMED)
def test_loom_is_within_115_percent_of_belady(replays, trace) -> None:
    for seed, res in replays.items():
        r = res[trace]
        assert r["loom"]["load_s"] <= 1.15 * r["belady"]["load_s"] + TOL, (seed, r["loom"], r["belady"])


def _draw(loom: float, belady: float = 100.0, lru: float = 200.0, ollama: float = 200.0) -> dict:
    return {name: {"load_s": v, "peak": 1.0, "budget": 2.0}
            for name, v in (("loom", loom), ("belady", belady), ("lru", lru), ("ollama", ollama))}


def test_zipf_is_judged_on_the_mean_of_its_draws_not_on_one() -> None:
    sim = load_sim()
    assert "zipf6" in sim.PER_DRAW_EXEMPT and len(sim.ZIPF_SEEDS) == 30
    # One unlucky draw over 1.15x Belady: a miss on its own, not on the mean.
    draws = [_draw(125.0)] + [_draw(105.0)] * 9
    assert sim.verdict(draws[0]) and not sim.verdict(draws[0], loading=False)
    means, missed = sim.mean_verdict(draws)
    assert means["belady"] == pytest.approx(1.07) and not missed
    # Over 1.15x on the mean, or worse than LRU on the mean: missed.
    assert sim.mean_verdict([_draw(120.0)] * 3)[1]
    assert sim.mean_verdict([_draw(105.0, lru=100.0)] * 3)[1]
    # The budget is never averaged away.
    over = _draw(105.0)
    over["lru"]["peak"] = 3.0
    assert sim.verdict(over, loading=False) == ["lru peak over budget"]
