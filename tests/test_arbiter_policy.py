"""Loom's eviction policy on request histories a user would recognise (pure bookkeeping: no model loads)."""

from __future__ import annotations

from core.arbiter import CostAwarePolicy, Lease, ModelStats

GiB = 1024**3


def history(times: list[float]) -> ModelStats:
    st = ModelStats()
    for t in times:
        st.record_request(t)
    return st


def idle(name: str, size_gib: float, priority: int = 0) -> Lease:
    return Lease(name=name, device="cpu", size=int(size_gib * GiB), state="ready", priority=priority)


def test_a_coder_whose_burst_ended_goes_before_the_busy_coordinator() -> None:
    # The coordinator is asked every few seconds; the coder had one long pause (41 s) among
    # short burst gaps and has now been idle 40 s. One lucky long gap must not make it look due.
    coord = history([float(t) for t in range(0, 196, 5)])
    coder = history([100, 103, 106, 147, 150, 153, 156.0])
    stats = {"coordinator": coord, "coder": coder}
    for st, secs in ((coord, 4.3), (coder, 5.1)):
        st.load_seconds = secs
    leases = [idle("coordinator", 5, priority=1), idle("coder", 6)]
    victims = CostAwarePolicy().choose(leases, 3 * GiB, stats, now=196.0)
    assert [v.name for v in victims] == ["coder"]


def test_on_a_cycle_the_model_used_last_goes_first() -> None:
    # Four models requested in turn every 3 s, three fit: the one just used is needed furthest away.
    stats = {f"c{i}": history([3.0 * k for k in range(40) if k % 4 == i]) for i in range(4)}
    for st in stats.values():
        st.load_seconds = 3.5
    now = 3.0 * 39 + 1  # c3 was just used, c0 is due next
    leases = [idle("c0", 4), idle("c1", 4), idle("c3", 4)]
    victims = CostAwarePolicy().choose(leases, 4 * GiB, stats, now=now)
    assert [v.name for v in victims] == ["c3"]


def test_a_frequent_model_outlives_a_rare_one_of_the_same_size() -> None:
    stats = {"hot": history([2.0 * k for k in range(50)]), "rare": history([0.0, 40.0, 95.0])}
    for st in stats.values():
        st.load_seconds = 2.0
    victims = CostAwarePolicy().choose([idle("hot", 2), idle("rare", 2)], 2 * GiB, stats, now=100.0)
    assert [v.name for v in victims] == ["rare"]
