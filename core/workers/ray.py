"""``placement = "ray"``: a model in a Ray actor on a node of an existing Ray cluster.

``RayCluster`` connects once (``[cluster] address``: "auto", ``ray://host:10001`` or the
GCS address of a cluster), lists the alive nodes and gives the pool one memory budget per
node and device kind: the node's ``[cluster] memory_resource`` (MiB; declared with
``ray start --resources``) for RAM, ``gpu_memory_resource`` for GPU memory, else Ray's own
``memory`` figure. Ray's resources are logical (nothing stops a process from using more),
so Loom's arbiters stay the authority: ``choose_device`` picks the node that has room
(or the node the model is pinned to with ``node = "..."``), the arbiter of that node
reserves, evicts or waits, and the actor is then placed on exactly that node (a hard node
affinity) while also requesting the memory resource and ``num_gpus``, so Ray's view agrees.

``RayInvoker`` implements ``core.capabilities.Invoker`` over a ``ModelActor``: each call is
a streaming generator read in a thread; cancellation is a ``cancel`` call on the (threaded)
actor; an actor's death (``ray.kill``, a crash, a lost node) is a ``CrashReport`` handed
to the pool exactly like a worker process's.

``ray`` is imported only here, and only when a Ray-placed model is used.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..blocking import CancelFlag
from ..logging import get_logger
from ..tools import ToolError
from .crash import CrashReport, WorkerCrashed, WorkerGone

log = get_logger("loom.workers.ray")
MiB = 1024 * 1024
CANCEL_POLL_S = 0.01
NODE_LABEL = "loom.node"  # `ray start --labels='{"loom.node": "gpu-box"}'` names a node for Loom


class ClusterError(ToolError):
    """The Ray cluster cannot be reached or cannot host the model; the message says what to do."""


@dataclass
class RayNode:
    id: str
    name: str
    address: str
    hostname: str
    resources: dict[str, float]
    labels: dict[str, str] = field(default_factory=dict)

    def matches(self, want: str) -> bool:
        """``node = "..."``: a Loom node name, a label value or ``key=value``, a node id (prefix), a host."""
        if want in (self.name, self.address, self.hostname) or (len(want) >= 6 and self.id.startswith(want)):
            return True
        key, eq, value = want.partition("=")
        if eq:
            return self.labels.get(key.strip()) == value.strip()
        return want in self.labels.values()

    @property
    def gpus(self) -> float:
        return self.resources.get("GPU", 0.0)


class RayCluster:
    def __init__(self, config: Any) -> None:
        self.config = config
        self._connected = False
        self._lock = threading.Lock()

    def close(self) -> None:
        """Disconnect; a local instance this daemon started stops with it (left to Ray's exit
        hook, its dashboard and runtime-env agents outlived the daemon)."""
        with self._lock:
            if not self._connected:
                return
            self._connected = False
        import ray

        if ray.is_initialized():
            ray.shutdown()

    # -- connection and nodes --------------------------------------------------------------

    def ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ClusterError("placement = \"ray\" needs Ray: pip install 'loomd[ray]'") from None
        with self._lock:
            if not self._connected:
                address = None if self.config.address == "local" else self.config.address
                if address is None:
                    # Ray starts its workers at niceness 15: a model actor then loses the CPU to
                    # any busy process (measured: 0.35x inline tokens/s beside niced test runs,
                    # 0.97x on a quiet machine). Loom's models are the work, not background
                    # jobs; a cluster started by `ray start` takes the same variable (cluster.md).
                    os.environ.setdefault("RAY_worker_niceness", "0")
                try:
                    if not ray.is_initialized():
                        ray.init(address=address, namespace=self.config.namespace, ignore_reinit_error=True,
                                 log_to_driver=False, include_dashboard=False if address is None else None)
                except Exception as exc:
                    raise ClusterError(f"cannot connect to the Ray cluster at {self.config.address!r}: {exc}. "
                                       f"Start one with `ray start --head` (docs/cluster.md) or fix [cluster] "
                                       f"address") from None
                self._connected = True
        return ray

    def nodes(self) -> list[RayNode]:
        ray = self.ray()
        out = []
        for n in ray.nodes():
            if not n.get("Alive"):
                continue
            labels = {k: str(v) for k, v in (n.get("Labels") or {}).items()}
            node_id = n["NodeID"]
            out.append(RayNode(id=node_id, name=labels.get(NODE_LABEL) or node_id[:8],
                               address=n.get("NodeManagerAddress", ""), hostname=n.get("NodeManagerHostname", ""),
                               resources=dict(n.get("Resources") or {}), labels=labels))
        return sorted(out, key=lambda x: x.name)

    def node_named(self, name: str) -> RayNode | None:
        return next((n for n in self.nodes() if n.name == name), None)

    def budget(self, device: str) -> tuple[int, str]:
        """``(bytes, source)`` for the arbiter of ``node/cpu`` or ``node/cuda``."""
        name, _, kind = device.rpartition("/")
        node = self.node_named(name)
        if node is None:
            return 0, "node not in the cluster"
        res = self.config.gpu_memory_resource if kind.startswith("cuda") else self.config.memory_resource
        if res in node.resources:
            return int(node.resources[res] * MiB), f"Ray node resource {res}"
        if not kind.startswith("cuda") and "memory" in node.resources:
            return int(node.resources["memory"]), "Ray node memory"
        return 0, f"the node declares no {res} resource"

    # -- placement ---------------------------------------------------------------------------

    async def choose_device(self, pool: Any, lease: Any, cfg: Any, backend: Any) -> str:
        """The ``node/kind`` arbiter key the model will be budgeted (and placed) on."""
        nodes = await anyio.to_thread.run_sync(self.nodes)
        want_gpu = cfg.device.startswith("cuda") or (cfg.device == "auto" and "cuda" in backend.devices
                                                     and any(n.gpus for n in nodes))
        kind = "cuda" if want_gpu else "cpu"
        candidates = [n for n in nodes if kind == "cpu" or n.gpus >= 1]
        if cfg.node:
            candidates = [n for n in candidates if n.matches(cfg.node)]
        if not candidates:
            known = ", ".join(f"{n.name} ({n.hostname}, labels {n.labels})" for n in nodes) or "none alive"
            pin = f" matching node = {cfg.node!r}" if cfg.node else ""
            raise ClusterError(f"no Ray node{pin} can host model {lease.name!r} on {kind}; nodes: {known}")
        best: tuple[Any, ...] | None = None
        for n in candidates:
            arb = pool.arbiter(f"{n.name}/{kind}")
            free = arb.free_for(lease.name)
            evictable = sum(le.size for le in arb.leases.values() if le.evictable and le.name != lease.name)
            # Fits now (most room first) > fits by evicting idle models > the biggest budget (waits).
            rank = (free >= lease.size, free + evictable >= lease.size, free, arb.budget)
            if best is None or rank > best[0]:
                best = (rank, n)
        assert best is not None
        return f"{best[1].name}/{kind}"

    def invoker(self, spec: Any, backend_path: str, lease: Any,
                on_exit: Callable[[CrashReport], str | None]) -> RayInvoker:
        name, _, kind = lease.device.rpartition("/")
        return RayInvoker(self, spec, backend_path, name, kind, lease.size, on_exit)


class _Call:
    __slots__ = ("cancel", "cancel_sent", "done", "id", "op", "polled", "post")

    def __init__(self, cid: int, op: str, post: Any, cancel: threading.Event) -> None:
        self.id, self.op, self.post, self.cancel = cid, op, post, cancel
        self.cancel_sent = False
        self.polled = not isinstance(cancel, CancelFlag)  # a plain Event: the watcher looks
        self.done = threading.Event()


class RayInvoker:
    """One model in one Ray actor; an ``Invoker`` for its capabilities."""

    placement = "ray"

    def __init__(self, cluster: RayCluster, spec: Any, backend_path: str, node: str, kind: str, size: int,
                 on_exit: Callable[[CrashReport], str | None]) -> None:
        self.cluster = cluster
        self.spec = spec
        self.model = spec.name
        self.backend_path = backend_path
        self.node = node
        self.kind = kind
        self.size = size
        self.on_exit = on_exit
        self.actor: Any = None
        self.pid: int | None = None
        self.info: Any = None
        self.measured: int | None = None
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._cv = threading.Condition()
        self._stopping = False
        self._dead: CrashReport | None = None
        self._crash_message = ""

    @property
    def busy(self) -> int:
        """Calls in flight."""
        return len(self._calls)

    @property
    def alive(self) -> bool:
        return self.actor is not None and self._dead is None

    def start(self) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .ray_actor import ModelActor

        ray = self.cluster.ray()
        node = self.cluster.node_named(self.node)
        if node is None:
            raise ClusterError(f"Ray node {self.node!r} left the cluster before model {self.model!r} could start there")
        # Ask Ray for the memory too (when the node declares the resource), so its view agrees with ours.
        res = self.cluster.config.gpu_memory_resource if self.kind == "cuda" else self.cluster.config.memory_resource
        resources = {res: max(1, -(-self.size // MiB))} if res in node.resources else {}
        device = "cuda:0" if self.kind == "cuda" else "cpu"  # Ray hands the actor its GPU as device 0
        self.actor = ray.remote(ModelActor).options(
            num_cpus=0, num_gpus=1 if self.kind == "cuda" else 0, resources=resources,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.id, soft=False),
            max_concurrency=32, max_restarts=0, name=None,
        ).remote()
        try:
            info, before, after, _seconds, pid = ray.get(self.actor.load.remote(self.backend_path, self.spec, device))
        except Exception as exc:
            self._kill()
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                raise cause from None  # the backend's own error (a ToolError with the fix)
            raise ClusterError(f"model {self.model!r} could not start on Ray node {self.node}: "
                               f"{_first_line(exc)}") from None
        self.info, self.pid = info, pid
        self.measured = max(after - before, 0)
        threading.Thread(target=self._watch_cancels, name=f"loom-ray-cancels:{self.model}", daemon=True).start()
        return info

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        if self.actor is not None and self._dead is None:
            ray = self.cluster.ray()
            try:
                ray.get(self.actor.unload.remote(), timeout=timeout)
            except Exception as exc:  # dead already, or stuck: the kill below frees it either way
                log.warning("ray actor unload failed", model=self.model, error=_first_line(exc))
        self._kill()
        self._fail_all(WorkerGone(f"model {self.model!r} was unloaded while this call was running"))
        with self._cv:
            self._dead = self._dead or CrashReport(self.model, "ray", cause="stopped")
            self._cv.notify_all()

    def kill(self) -> None:
        """``ray.kill`` the actor (tests and benchmarks: a crash on demand)."""
        if self.actor is not None:
            self.cluster.ray().kill(self.actor, no_restart=True)

    def _kill(self) -> None:
        if self.actor is not None:
            try:
                self.cluster.ray().kill(self.actor, no_restart=True)
            except Exception:
                pass

    # -- the invoker ---------------------------------------------------------------------

    def launch(self, op: str, request: Any, post: Any, cancel: threading.Event) -> Any:
        call = _Call(next(self._ids), op, post, cancel)
        if self._dead is not None:
            call.done.set()
            post(("error", WorkerGone(f"model {self.model!r} is not running any more; call again to restart it")))
        else:
            with self._cv:
                self._calls[call.id] = call
                if call.polled:
                    self._cv.notify()
            threading.Thread(target=self._consume, args=(call, request), name=f"loom-ray-{op}", daemon=True).start()
            if isinstance(cancel, CancelFlag):  # forwarded the moment it is set (see process.py)
                cancel.on_set(lambda: self._send_cancel(call))

        async def released() -> None:
            if not call.done.is_set():
                await anyio.to_thread.run_sync(call.done.wait)

        return released

    def _consume(self, call: _Call, request: Any) -> None:
        from .protocol import rebuild_error

        ray = self.cluster.ray()
        item: tuple[str, Any] | None = None
        try:
            gen = self.actor.run.options(num_returns="streaming").remote(call.id, call.op, request)
            for ref in gen:
                kind, value = ray.get(ref)
                if kind == "events":
                    for ev in value:
                        call.post(("event", ev))
                elif kind == "done":
                    item = ("done", value)
                else:
                    item = ("error", rebuild_error(value[0], value[1], ToolError))
        except Exception as exc:
            if isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.ActorDiedError) or _actor_gone(exc):
                item = ("error", self._died(exc))
            else:
                item = ("error", ToolError(f"model {self.model!r} on Ray node {self.node}: {_first_line(exc)}"))
        with self._cv:
            self._calls.pop(call.id, None)
        call.done.set()
        call.post(item or ("error", ToolError(f"model {self.model!r}: the Ray actor ended the call without a result")))

    def _died(self, exc: BaseException) -> Exception:
        """The actor is gone: report it once (to the pool), fail every call the same way."""
        with self._cv:
            first = self._dead is None
            if first:
                ops = [c.op for c in self._calls.values()]
                self._dead = CrashReport(self.model, "ray", pid=self.pid, ops=ops, node=self.node,
                                         cause=f"Ray actor died: {_first_line(exc)}")
                self._cv.notify_all()
        report = self._dead
        assert report is not None
        if self._stopping:
            return WorkerGone(f"model {self.model!r} was unloaded while this call was running")
        if first:
            log.error("ray actor died", model=self.model, node=self.node, cause=report.cause)
            suffix = None
            try:
                suffix = self.on_exit(report)
            except Exception as err:
                log.warning("crash handler failed", model=self.model, error=repr(err))
            self._crash_message = report.describe() + (f"\n{suffix}" if suffix else "")
        while not self._crash_message:  # another call is reporting it right now
            time.sleep(0.005)
        return WorkerCrashed(self._crash_message, report)

    def _fail_all(self, error: Exception) -> None:
        with self._cv:
            calls, self._calls = list(self._calls.values()), {}
        for call in calls:
            call.done.set()
            call.post(("error", error))

    def _send_cancel(self, call: _Call) -> None:
        with self._cv:
            if call.cancel_sent or call.id not in self._calls or self._dead is not None:
                return
            call.cancel_sent = True
        try:
            self.actor.cancel.remote(call.id)
        except Exception:
            pass  # the actor is gone: the consumer reports it

    def _watch_cancels(self) -> None:
        """Poll the calls whose cancel flag cannot call us back (plain ``threading.Event``s)."""
        while True:
            with self._cv:
                while self._dead is None and not any(c.polled for c in self._calls.values()):
                    self._cv.wait()
                if self._dead is not None:
                    return
                pending = [c for c in self._calls.values() if c.polled and c.cancel.is_set()]
            for call in pending:
                self._send_cancel(call)
            time.sleep(CANCEL_POLL_S)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _actor_gone(exc: BaseException) -> bool:
    return "actor" in type(exc).__name__.lower() and ("died" in str(exc).lower() or "dead" in str(exc).lower())
