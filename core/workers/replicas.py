"""``replicas = N``: one model served by N workers, each call on the least busy one.

``ReplicaSet`` is an ``Invoker`` over N invokers of the same placement (worker processes or
Ray actors), started together, each holding its own copy of the model (the pool reserves
N times the model's memory). ``launch`` hands a call to the replica with the fewest calls
in flight, so N requests run in parallel instead of queueing on one model.

A crash of one replica is a crash of the model (the pool's usual report, event and
restart); the surviving replicas are stopped so that the restart brings back all N with a
clean reservation.
"""

from __future__ import annotations

import threading
from typing import Any

from .crash import CrashReport


class ReplicaSet:
    def __init__(self, invokers: list[Any]) -> None:
        if not invokers:
            raise ValueError("a replica set needs at least one invoker")
        self.invokers = invokers
        self.placement = invokers[0].placement
        self.node = invokers[0].node
        self.info: Any = None
        self.measured: int | None = None

    @property
    def pid(self) -> list[int | None]:
        return [getattr(inv, "pid", None) for inv in self.invokers]

    @property
    def busy(self) -> list[int]:
        """Calls in flight on each replica."""
        return [inv.busy for inv in self.invokers]

    def start(self) -> Any:
        """Start every replica at once; if one fails, stop the others and raise its error."""
        errors: list[BaseException] = []
        infos: list[Any] = [None] * len(self.invokers)

        def one(i: int) -> None:
            try:
                infos[i] = self.invokers[i].start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(self.invokers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self._stop_all([inv for inv, info in zip(self.invokers, infos, strict=True) if info is not None])
            raise errors[0]
        self.info = infos[0]
        sizes = [inv.measured for inv in self.invokers if inv.measured is not None]
        self.measured = sum(sizes) if sizes else None
        return self.info

    def launch(self, op: str, request: Any, post: Any, cancel: threading.Event) -> Any:
        return min(self.invokers, key=lambda inv: inv.busy).launch(op, request, post, cancel)

    def stop(self) -> None:
        self._stop_all(self.invokers)

    def stop_survivors(self, report: CrashReport) -> None:
        """After one replica died: stop the others (in a thread; the dead one cleans up itself)."""
        alive = [inv for inv in self.invokers if inv.alive]  # the dead one marked itself before reporting
        threading.Thread(target=self._stop_all, args=(alive,), name="loom-replicas-stop", daemon=True).start()

    def kill(self) -> None:
        """SIGKILL the first replica (tests and benchmarks)."""
        self.invokers[0].kill()

    @staticmethod
    def _stop_all(invokers: list[Any]) -> None:
        threads = [threading.Thread(target=inv.stop, daemon=True) for inv in invokers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
