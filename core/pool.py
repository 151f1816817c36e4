"""The central model pool: the only way a plugin gets a loaded model.

::

    name = app.pool.model_for("coder")            # who serves a role (ModelUnavailable if nobody)
    async with app.pool.use(name, Chat) as chat:  # loaded on demand, busy while inside
        await chat.complete(...)                  # a typed capability handle, never the raw model

A load estimates the model's memory (backend ``estimate``, or the ``memory`` override),
reserves it on the device's ``Arbiter`` (evicting idle models or waiting), loads in a
worker thread, then measures what the load really took (RSS, or free CUDA memory) and
corrects the next estimate upward when it was too low. Concurrent requests for one model
share one load; a failed load releases its reservation and the next request retries.

After use a model stays for its ``keep_alive`` (0: unloaded at once; negative: kept);
``pin = true`` models load at start and are never evicted. Every load, unload, eviction,
wait and failure is an event on the bus.

Placement (``placement`` in the model's config; "auto" is the backend's
``default_placement``): ``inline`` loads in a thread of this process, ``process`` in a
worker subprocess (``core.workers``), ``ray`` in a Ray actor on the cluster node that has
room (``core.workers.ray``). A worker that dies is a ``ModelCrashed`` event: its callers get
the report as a tool error, its reservation is released, and the next request starts a new
worker, after a back-off once it has crashed more than once; ``[pool] crash_limit``
crashes within ``crash_window`` seconds mark the model failed (shown in its status) until
an explicit ``load``.

Models come from ``[models.<name>]`` in loom.toml and from packaged defaults plugins add
with ``add_default_model`` (used for a role only when no configured model serves it).
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import msgspec

from .arbiter import (
    POLICIES,
    Arbiter,
    EvictionPolicy,
    Lease,
    ModelStats,
    PoolCapacityError,
    PoolError,
    PoolTimeout,
)
from .backends import MemoryEstimate, ModelBackend, ModelSpec
from .capabilities import Capability, CapabilityError, InlineInvoker, ModelInfo
from .config import ModelConfig
from .events import Event
from .logging import get_logger
from .tools import ToolError
from .units import format_bytes, parse_bytes

__all__ = [
    "ModelCrashed",
    "ModelEvicted",
    "ModelFailed",
    "ModelLoadFailed",
    "ModelLoaded",
    "ModelLoading",
    "ModelPool",
    "ModelUnavailable",
    "ModelUnloaded",
    "ModelWaiting",
    "PoolCapacityError",
    "PoolError",
    "PoolTimeout",
]

log = get_logger("loom.pool")
C = TypeVar("C", bound=Capability)


class ModelUnavailable(ToolError):
    """No such model, or no model serves a role; the message says what to configure."""


class ModelLoadError(PoolError):
    pass


class ModelFailed(ModelUnavailable):
    """The model crashed too often; it stays failed until an explicit ``loom models load``."""


# --- events ----------------------------------------------------------------------------


class PoolEvent(Event, frozen=True, kw_only=True):
    model: str
    device: str = "cpu"
    source: str = "pool"


class ModelLoading(PoolEvent, frozen=True, kw_only=True):
    estimate: int
    reason: str


class ModelLoaded(PoolEvent, frozen=True, kw_only=True):
    seconds: float
    estimate: int
    measured: int | None = None
    reason: str = ""


class ModelUnloaded(PoolEvent, frozen=True, kw_only=True):
    reason: str  # "keep_alive expired", "keep_alive 0", "requested", "shutdown"
    freed: int = 0


class ModelEvicted(ModelUnloaded, frozen=True, kw_only=True):
    """An idle model unloaded to make room for ``for_model``."""

    for_model: str = ""


class ModelWaiting(PoolEvent, frozen=True, kw_only=True):
    need: int
    budget: int
    reason: str


class ModelLoadFailed(PoolEvent, frozen=True, kw_only=True):
    error: str


class EstimateCorrected(PoolEvent, frozen=True, kw_only=True):
    estimate: int
    measured: int


class ModelCrashed(PoolEvent, frozen=True, kw_only=True):
    """A model's worker process or Ray actor died; its reservation is released."""

    placement: str
    how: str  # "killed by SIGKILL", "exited with code 1", "Ray actor died"
    signal: str | None = None
    exit_code: int | None = None
    pid: int | None = None
    node: str | None = None
    ops: list[str] = []  # what it was running
    stderr: list[str] = []  # its last lines of output
    crashes: int = 1  # within [pool] crash_window
    failed: bool = False  # crash_limit reached: marked failed
    restart_in: float = 0.0  # seconds the next start waits (back-off)


# --- the pool --------------------------------------------------------------------------


_DEFAULT_KEEP_ALIVE = {f.name: f.default for f in msgspec.structs.fields(ModelConfig)}["keep_alive"]


class _DefaultModel(msgspec.Struct):
    config: ModelConfig
    roles: tuple[str, ...]


class ModelPool:
    def __init__(self, app: Any, *, clock: Callable[[], float] = time.monotonic,
                 policy: EvictionPolicy | None = None) -> None:
        self.app = app
        self.clock = clock
        self.policy = policy
        self._defaults: dict[str, _DefaultModel] = {}
        self._backends: dict[str, ModelBackend] = {}
        self._arbiters: dict[str, Arbiter] = {}
        self._leases: dict[str, Lease] = {}
        self.stats: dict[str, ModelStats] = {}
        self._corrections: dict[str, int] = {}  # name -> measured bytes that beat the estimate
        self._estimates: dict[tuple[str, str], MemoryEstimate] = {}
        self._crashes: dict[str, deque[float]] = {}  # name -> clock times of recent crashes
        self._failed: dict[str, str] = {}  # name -> why it is marked failed
        self._cluster: Any = None  # core.workers.ray.RayCluster once a ray model is placed
        self._forkserver: Any = None  # core.workers.forkserver.ForkServer once a process model is placed
        self._reaper_scope: anyio.CancelScope | None = None
        self._wake = anyio.Event()
        self._closing = False

    # -- configuration ------------------------------------------------------------------

    @property
    def settings(self) -> Any:
        return self.app.config.pool

    def add_default_model(self, name: str, config: ModelConfig, *, roles: tuple[str, ...] | list[str] = ()) -> None:
        """A packaged model a plugin ships. It serves ``config.role`` and ``roles`` only when
        no configured model does; a configured model with the same name replaces it."""
        all_roles = tuple(dict.fromkeys([*([config.role] if config.role else []), *roles]))
        self._defaults[name] = _DefaultModel(config, all_roles)

    def models(self) -> dict[str, ModelConfig]:
        """Every model the pool can load: packaged defaults overlaid by loom.toml."""
        out = {n: d.config for n, d in self._defaults.items()}
        out.update(self.app.config.models)
        return out

    def config_for(self, name: str) -> ModelConfig:
        cfg = self.models().get(name)
        if cfg is None:
            known = ", ".join(sorted(self.models())) or "none"
            raise ModelUnavailable(f"no model named {name!r} (known: {known}); add [models.{name}] to loom.toml "
                                   f"or run `loom models add {name} --backend BACKEND --file PATH`")
        return cfg

    def roles_of(self, name: str) -> list[str]:
        if name in self.app.config.models:
            role = self.app.config.models[name].role
            return [role] if role else []
        d = self._defaults.get(name)
        taken = {c.role for c in self.app.config.models.values()}
        return [r for r in d.roles if r not in taken] if d else []  # the roles this default still serves

    def model_for(self, role: str) -> str:
        """The model serving ``role``: a configured one first (highest priority), else a default."""
        configured = [(n, c) for n, c in self.app.config.models.items() if c.role == role]
        if configured:
            return min(configured, key=lambda nc: (-nc[1].priority, nc[0]))[0]
        defaults = [(n, d) for n, d in self._defaults.items() if role in d.roles and n not in self.app.config.models
                    and d.config.backend in self.app.backends]
        if defaults:  # a default made for this role beats one that also covers it
            return min(defaults, key=lambda nd: (nd[1].config.role != role, -nd[1].config.priority))[0]
        raise ModelUnavailable(
            f"no model serves the role {role!r}. Add one to loom.toml, e.g.\n"
            f'  [models.{role}]\n  backend = "llama_cpp"\n  file = "/path/to/model.gguf"\n  role = "{role}"\n'
            f"or run `loom models add {role} --backend llama_cpp --file /path/to/model.gguf --role {role}`")

    def keep_alive_of(self, cfg: ModelConfig) -> float:
        """The model's keep_alive; left at ModelConfig's default, [pool] default_keep_alive applies."""
        return self.settings.default_keep_alive if cfg.keep_alive == _DEFAULT_KEEP_ALIVE else cfg.keep_alive

    # -- backends, devices, arbiters ---------------------------------------------------------

    def backend(self, name: str) -> ModelBackend:
        b = self._backends.get(name)
        if b is None:
            factory = self.app.backends.get(name)
            if factory is None:
                known = ", ".join(sorted(self.app.backends)) or "none"
                raise ModelUnavailable(f"no backend named {name!r} is registered (registered: {known}); "
                                       f"is the plugin that provides it installed and enabled?")
            b = self._backends[name] = factory()
        return b

    def device_of(self, cfg: ModelConfig, backend: ModelBackend) -> str:
        from . import memprobe

        want = cfg.device
        gpu_ok = "cuda" in backend.devices
        if want == "auto":
            return "cuda:0" if gpu_ok and memprobe.cuda_available() else "cpu"
        if want == "cpu":
            return "cpu"
        if want.startswith("cuda"):
            if not gpu_ok:
                raise ModelUnavailable(f"backend {cfg.backend!r} cannot run on {want}; set device = \"cpu\"")
            if not memprobe.cuda_available():
                raise ModelUnavailable(f"device {want!r} is configured but no CUDA device is usable here; "
                                       f"set device = \"auto\" or \"cpu\"")
            return want if ":" in want else "cuda:0"
        raise ModelUnavailable(f"unknown device {want!r} (use auto, cpu, cuda or cuda:N)")

    def placement_of(self, cfg: ModelConfig, backend: ModelBackend) -> str:
        """Where a model runs: its configured placement, or for "auto" its backend's default."""
        want = cfg.placement
        if want == "auto":
            want = getattr(backend, "default_placement", "process")
        if want not in ("inline", "process", "ray"):
            raise ModelUnavailable(f"backend {cfg.backend!r} asks for placement {want!r}; use inline, process or ray")
        if want == "ray" and self.app.config.cluster.engine != "ray":
            raise ModelUnavailable('placement = "ray" needs a Ray cluster: add [cluster] engine = "ray" (and address) '
                                   'to loom.toml, see docs/cluster.md; or set placement = "process"')
        return want

    @staticmethod
    def replicas_of(cfg: ModelConfig, placement: str) -> int:
        """Workers serving the model (``replicas``); a model inline in the daemon is always one."""
        if cfg.replicas > 1 and placement == "inline":
            raise ModelUnavailable(f"replicas = {cfg.replicas} needs placement = \"process\" or \"ray\": one "
                                   f"process holds one copy of a model")
        return max(cfg.replicas, 1)

    def arbiter(self, device: str) -> Arbiter:
        arb = self._arbiters.get(device)
        if arb is None:
            from . import memprobe

            s = self.settings
            configured = s.ram_budget if device == "cpu" else s.gpu_budget
            if "/" in device:  # "node/cpu": a Ray node's budget, from the resources it declares
                budget, source = self.cluster().budget(device)
            elif configured is not None:
                budget, source = parse_bytes(configured), "from [pool] config"
            else:
                avail = memprobe.device_available(device) or 0
                reserve = parse_bytes(s.ram_reserve if device == "cpu" else s.gpu_reserve)
                budget, source = max(avail - reserve, 0), "detected: available minus reserve"
            policy = self.policy or POLICIES["loom"]()
            arb = self._arbiters[device] = Arbiter(device, budget, policy=policy, queue_size=s.queue_size,
                                                   clock=self.clock, stats=self.stats, budget_source=source)
        return arb

    def _spec(self, name: str, cfg: ModelConfig) -> ModelSpec:
        return ModelSpec(name, cfg, cache_dir=str(self.app.config.model_cache_dir))

    def estimate(self, name: str) -> MemoryEstimate:
        """What ``name`` will take: override, else backend estimate corrected by measurement."""
        cfg = self.config_for(name)
        backend = self.backend(cfg.backend)
        device = self.device_of(cfg, backend)
        override = cfg.memory_override()
        if override is not None:
            return MemoryEstimate(total=override, device=device, source="override")
        key = (name, msgspec.json.encode(cfg).decode())
        est = self._estimates.get(key)
        if est is None:
            try:
                est = backend.estimate(self._spec(name, cfg), device)
            except ToolError:
                raise
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot estimate model {name!r}: {exc}") from None
            self._estimates[key] = est
        measured = self._corrections.get(name)
        if measured is not None and measured > est.total:
            return MemoryEstimate(total=measured, device=device, breakdown=est.breakdown, source="measured")
        return est

    # -- loading ------------------------------------------------------------------------

    async def _publish(self, event: Event) -> None:
        bus = getattr(self.app, "bus", None)
        if bus is not None:
            await bus.publish(event)

    @asynccontextmanager
    async def use(self, name: str, capability: type[C] | None = None, *,
                  reason: str = "requested") -> AsyncIterator[Any]:
        """Hold ``name`` loaded while inside; yields a ``capability`` handle on it.

        Without a capability it yields the model's ``ModelInfo`` (for callers that only need
        it loaded, or want to see what it serves).
        """
        if capability is not None:
            self._check_serves(name, capability)
        lease = await self._acquire(name, reason)
        try:
            yield lease.info if capability is None else self._handle(lease, capability)
        finally:
            with anyio.CancelScope(shield=True):
                await self._release(lease)

    def use_role(self, role: str, capability: type[C], *, reason: str | None = None) -> Any:
        """``use`` on the model serving ``role`` (ModelUnavailable, with the fix, if none does)."""
        return self.use(self.model_for(role), capability, reason=reason or role)

    def _check_serves(self, name: str, capability: type[Capability]) -> None:
        cfg = self.config_for(name)
        backend = self.backend(cfg.backend)
        serves = getattr(backend, "capabilities", ())
        if capability.kind not in serves:
            raise CapabilityError(
                f"model {name!r} (backend {cfg.backend!r}) cannot serve {capability.kind!r}: that backend serves "
                f"{', '.join(serves) or 'nothing'}. Configure a model for this job in loom.toml.")

    def _handle(self, lease: Lease, capability: type[C]) -> C:
        info: ModelInfo = lease.info
        if capability.kind not in info.capabilities:
            hint = {"embed": " (llama.cpp models need options = { embedding = true } for embeddings)",
                    "chat": ""}.get(capability.kind, "")
            raise CapabilityError(f"model {lease.name!r} as configured cannot serve {capability.kind!r}; it serves "
                                  f"{', '.join(info.capabilities) or 'nothing'}{hint}")
        return capability(lease.name, lease.invoker, info)

    async def _acquire(self, name: str, reason: str) -> Lease:
        self.config_for(name)
        if name in self._failed:
            raise ModelFailed(f"model {name!r} is marked failed: {self._failed[name]}. Fix the cause, then run "
                              f"`loom models load {name}` to try again.")
        self.stats.setdefault(name, ModelStats()).record_request(self.clock())
        await self.reap()
        while True:
            lease = self._leases.get(name)
            if lease is None:
                lease = await self._start_load(name, reason)
                return lease  # the loader holds one use already
            if lease.state == "ready":
                lease.users += 1
                lease.expires_at = None
                return lease
            await lease.ready.wait()  # coalesce with the load (or unload) under way
            if lease.state == "failed" and not isinstance(lease.error, anyio.get_cancelled_exc_class()):
                raise ModelLoadError(f"model {name!r} failed to load: {lease.error}") from None

    async def _start_load(self, name: str, reason: str) -> Lease:
        cfg = self.config_for(name)
        backend = self.backend(cfg.backend)
        device = self.device_of(cfg, backend)
        arb = self.arbiter(device)
        # Registered before the first await so concurrent requests coalesce onto this load.
        lease = Lease(name=name, device=device, size=0, backend=cfg.backend, pinned=cfg.pin,
                      priority=cfg.priority, keep_alive=self.keep_alive_of(cfg), reason=reason, users=1)
        self._leases[name] = lease
        try:
            lease.placement = self.placement_of(cfg, backend)
            delay = self._restart_delay(name)
            if delay > 0:  # it crashed more than once lately: do not spin on a crashing model
                log.info("model restarts after a crash back-off", model=name, seconds=round(delay, 2))
                await anyio.sleep(delay)
            est = lease.estimate = await anyio.to_thread.run_sync(self.estimate, name)
            lease.size = est.total * self.replicas_of(cfg, lease.placement)  # each replica holds a copy
            if lease.placement == "ray":  # budgeted on the node it will run on
                device = lease.device = await self.cluster().choose_device(self, lease, cfg, backend)
                arb = self.arbiter(device)

            async def evict(victim: Lease, for_lease: Lease) -> None:
                await self._unload_lease(victim, f"evicted to make room for {for_lease.name}", for_model=for_lease.name)

            async def on_wait(le: Lease, why: str) -> None:
                log.info("model waits for memory", model=name, why=why)
                await self._publish(ModelWaiting(model=name, device=device, need=le.size, budget=arb.budget,
                                                 reason=why))

            await arb.reserve(lease, timeout=self.settings.queue_timeout, evict=evict, on_wait=on_wait)
            await self._publish(ModelLoading(model=name, device=device, estimate=est.total, reason=reason))
            with anyio.CancelScope(shield=True):  # a load in a thread cannot be abandoned half-way
                await self._load_into(lease, backend, self._spec(name, cfg), arb)
        except BaseException as exc:
            lease.state, lease.error = "failed", exc
            lease.users = 0
            arb.release(lease)
            if self._leases.get(name) is lease:
                del self._leases[name]
            lease.ready.set()
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                msg = str(exc) or type(exc).__name__
                with anyio.CancelScope(shield=True):
                    await self._publish(ModelLoadFailed(model=name, device=device, error=msg))
                log.warning("model load failed", model=name, error=msg)
                if isinstance(exc, ToolError):
                    raise
                raise ModelLoadError(f"model {name!r} failed to load: {msg}") from exc
            raise
        return lease

    async def _load_into(self, lease: Lease, backend: ModelBackend, spec: ModelSpec, arb: Arbiter) -> None:
        from . import memprobe

        # A Ray node's memory cannot be probed from here: the actor measures its own.
        probe = memprobe.device_used if lease.placement != "ray" else (lambda device: None)
        async with arb.io_lock:
            before = await anyio.to_thread.run_sync(probe, lease.device)
            t0 = time.perf_counter()
            t0v = self.clock()
            elsewhere = await self._place(lease, backend, spec)
            seconds = time.perf_counter() - t0
            virtual = self.clock() - t0v
            after = await anyio.to_thread.run_sync(probe, lease.device)
        measured = max(after - before, 0) if before is not None and after is not None else None
        if elsewhere is not None:  # RAM taken in a worker or actor, as it measured it there
            measured = elsewhere
        stats = self.stats.setdefault(spec.name, ModelStats())
        stats.loads += 1
        stats.load_seconds = virtual if virtual > 0 else seconds
        lease.measured = measured
        lease.state = "ready"
        lease.loaded_at = time.time()
        lease.last_used = self.clock()
        lease.ready.set()
        est = lease.estimate.total
        one = measured // self.replicas_of(spec.config, lease.placement) if measured is not None else None
        # Lower readings are expected (KV cache and compute pages are touched lazily), so the
        # estimate is only ever corrected upward: an underestimate is what makes peers crash.
        if one is not None and lease.estimate.source != "override" and one > est * 1.1:
            self._corrections[spec.name] = one
            await self._publish(EstimateCorrected(model=spec.name, device=lease.device, estimate=est,
                                                  measured=measured))
        await self._publish(ModelLoaded(model=spec.name, device=lease.device, seconds=round(seconds, 4),
                                        estimate=est, measured=measured, reason=lease.reason))
        log.info("model loaded", model=spec.name, device=lease.device, seconds=round(seconds, 3),
                 estimate=format_bytes(est), measured=format_bytes(measured) if measured is not None else None)

    async def _place(self, lease: Lease, backend: ModelBackend, spec: ModelSpec) -> int | None:
        """Load the model where its placement says; sets the lease's handle, invoker and info.

        Returns the memory the load took when it was measured elsewhere (a worker's RSS), else None.
        """
        if lease.placement in ("process", "ray"):
            return await self._place_remote(lease, backend, spec)
        handle = await anyio.to_thread.run_sync(backend.load, spec, lease.device)
        try:
            lease.info = _describe(backend, handle, spec)
        except BaseException:
            await anyio.to_thread.run_sync(_unload_and_collect, backend, handle)
            raise
        lease.handle = handle
        lease.invoker = InlineInvoker(backend, handle, spec.name)
        return None

    async def _place_remote(self, lease: Lease, backend: ModelBackend, spec: ModelSpec) -> int | None:
        from .workers import ProcessInvoker, backend_path
        from .workers.replicas import ReplicaSet

        token = anyio.lowlevel.current_token()

        def on_exit(report: Any) -> str | None:  # called from the invoker's thread when the worker dies
            return anyio.from_thread.run(self._worker_crashed, lease, report, token=token)

        path = backend_path(backend)

        def one() -> Any:
            if lease.placement == "ray":
                return self.cluster().invoker(spec, path, lease, on_exit)
            return ProcessInvoker(spec.name, path, spec, lease.device, data_dir=self.app.config.data_dir,
                                  forkserver=self._fork_server(path), on_exit=on_exit)

        replicas = max(spec.config.replicas, 1)
        invoker = one() if replicas == 1 else ReplicaSet([one() for _ in range(replicas)])
        lease.info = await anyio.to_thread.run_sync(invoker.start)
        lease.handle = lease.invoker = invoker
        lease.node = invoker.node
        # On a GPU the free-memory probe sees the worker's allocations too; RAM is the worker's own.
        return invoker.measured if lease.device.endswith("cpu") else None

    def _fork_server(self, backend_path: str) -> Any:
        """The fork server workers start from (started on the first process load), or None."""
        if not self.settings.fork_server or self._closing:
            return None
        from .workers.forkserver import ForkServer, worker_env

        if self._forkserver is None or not self._forkserver.alive:
            try:
                self._forkserver = ForkServer(worker_env())
            except OSError as exc:
                log.warning("cannot start the worker fork server", error=str(exc))
                return None
        self._forkserver.preload([backend_path.partition(":")[0]])
        return self._forkserver

    def cluster(self) -> Any:
        """The Ray cluster connection (``[cluster] engine = "ray"``), connected on first use."""
        if self._cluster is None:
            from .workers.ray import RayCluster

            self._cluster = RayCluster(self.app.config.cluster)
        return self._cluster

    # -- crashes ---------------------------------------------------------------------------

    def _recent_crashes(self, name: str) -> deque[float]:
        times = self._crashes.setdefault(name, deque())
        horizon = self.clock() - self.settings.crash_window
        while times and times[0] < horizon:
            times.popleft()
        return times

    def _restart_delay(self, name: str) -> float:
        """Seconds before ``name`` may start again: 0 after one crash, then doubling."""
        times = self._recent_crashes(name)
        if len(times) < 2:
            return 0.0
        wait = self.settings.crash_backoff * 2 ** (len(times) - 2)
        return max(times[-1] + wait - self.clock(), 0.0)

    async def _worker_crashed(self, lease: Lease, report: Any) -> str:
        """A worker died on its own: drop the lease, free its memory, count it, tell everyone."""
        name = lease.name
        if lease.state in ("unloading", "unloaded", "crashed"):
            return ""
        lease.state = "crashed"
        lease.error = RuntimeError(report.how)
        stop_survivors = getattr(lease.invoker, "stop_survivors", None)
        if stop_survivors is not None:  # one replica died: the restart brings back all of them
            stop_survivors(report)
        if self._leases.get(name) is lease:
            del self._leases[name]
        self.arbiter(lease.device).release(lease)
        times = self._recent_crashes(name)
        times.append(self.clock())
        failed = len(times) >= self.settings.crash_limit
        restart_in = self._restart_delay(name)
        if failed:
            window = self.settings.crash_window
            self._failed[name] = (f"it crashed {len(times)} times within {window:g}s; the last time its "
                                  f"{report.placement} worker was {report.how}")
            suffix = (f"It has crashed {len(times)} times within {window:g}s, so it is now marked failed; "
                      f"fix the cause and run `loom models load {name}` to try again.")
        elif restart_in > 0:
            suffix = f"The next request restarts it after {restart_in:.1f}s (it has crashed {len(times)} times)."
        else:
            suffix = "The next request restarts it."
        await self._publish(ModelCrashed(
            model=name, device=lease.device, placement=report.placement, how=report.how, signal=report.signal,
            exit_code=report.exit_code, pid=report.pid, node=report.node, ops=report.ops, stderr=report.stderr[-20:],
            crashes=len(times), failed=failed, restart_in=round(restart_in, 3)))
        lease.ready.set()
        return suffix

    def crash_count(self, name: str) -> int:
        return len(self._recent_crashes(name))

    def reset_failed(self, name: str) -> bool:
        """Forget ``name``'s crashes (an operator fixed the cause); True if it was marked failed."""
        self._crashes.pop(name, None)
        return self._failed.pop(name, None) is not None

    async def _release(self, lease: Lease) -> None:
        lease.users -= 1
        now = self.clock()
        lease.last_used = now
        if lease.users > 0 or lease.state != "ready":
            return
        self.arbiter(lease.device).notify()  # it became evictable: waiters may now fit
        if lease.pinned or lease.keep_alive < 0:
            lease.expires_at = None
        elif lease.keep_alive == 0:
            await self._unload_lease(lease, "keep_alive 0")
            return
        else:
            lease.expires_at = now + lease.keep_alive
        self._wake.set()

    async def _unload_lease(self, lease: Lease, reason: str, *, for_model: str | None = None) -> None:
        """Unload a resident, idle lease and release its memory."""
        arb = self.arbiter(lease.device)
        lease.mark_unloading()  # requests arriving now wait for the unload, then reload
        backend = self.backend(lease.backend)
        handle, lease.handle, lease.invoker = lease.handle, None, None
        try:
            with anyio.CancelScope(shield=True):
                async with arb.io_lock:
                    if lease.placement == "inline":
                        await anyio.to_thread.run_sync(_unload_and_collect, backend, handle)
                    else:  # the worker unloads and exits: all of its memory goes back
                        await anyio.to_thread.run_sync(handle.stop)
        except Exception as exc:  # the memory may be gone or not; never keep a half-dead model
            log.error("model unload failed", model=lease.name, error=repr(exc))
        finally:
            del handle
            if self._leases.get(lease.name) is lease:
                del self._leases[lease.name]
            arb.release(lease)
            lease.state = "unloaded"
            lease.ready.set()
        cls = ModelEvicted if for_model else ModelUnloaded
        extra = {"for_model": for_model} if for_model else {}
        await self._publish(cls(model=lease.name, device=lease.device, reason=reason, freed=lease.size, **extra))
        log.info("model unloaded", model=lease.name, reason=reason)

    # -- keep-alive ------------------------------------------------------------------------

    async def reap(self) -> list[str]:
        """Unload idle models whose keep-alive ran out; returns their names."""
        now = self.clock()
        done = []
        for lease in list(self._leases.values()):
            if lease.idle and lease.expires_at is not None and lease.expires_at <= now and not lease.pinned:
                await self._unload_lease(lease, "keep_alive expired")
                done.append(lease.name)
        return done

    def _next_expiry(self) -> float | None:
        times = [le.expires_at for le in self._leases.values() if le.idle and le.expires_at is not None]
        return min(times) if times else None

    async def _reaper(self) -> None:
        with anyio.CancelScope() as scope:
            self._reaper_scope = scope
            while not self._closing:
                nxt = self._next_expiry()
                wake = self._wake = anyio.Event()
                delay = None if nxt is None else max(nxt - self.clock(), 0.0)
                with anyio.move_on_after(delay if delay is not None else 3600.0):
                    await wake.wait()
                await self.reap()

    # -- explicit control ------------------------------------------------------------------

    async def set_pinned(self, name: str, pinned: bool) -> dict[str, Any]:
        """Pin a model at run time (loaded now, never evicted or timed out) or unpin it (its
        keep-alive runs again); until the daemon restarts, when ``pin`` in loom.toml rules."""
        if pinned:
            await self.load(name, reason="pinned from the dashboard")
        lease = self._leases.get(name)
        if lease is not None:
            lease.pinned = pinned
            if lease.users == 0 and lease.state == "ready":
                keep = lease.keep_alive
                lease.expires_at = None if pinned or keep < 0 else self.clock() + keep
                self.arbiter(lease.device).notify()
                self._wake.set()
        return self.model_status(name)

    async def load(self, name: str, *, reason: str = "requested") -> dict[str, Any]:
        """Load ``name`` now (it then stays for its keep-alive); returns its status.

        An explicit load also clears a "failed" mark left by repeated crashes.
        """
        self.reset_failed(name)
        async with self.use(name, reason=reason):
            pass
        return self.model_status(name)

    async def set_keep_alive(self, name: str, seconds: float) -> None:
        """Override a loaded model's keep-alive (Ollama's per-request ``keep_alive``): 0 unloads it
        once idle, a negative value keeps it; applied when its last request leaves if busy."""
        lease = self._leases.get(name)
        if lease is None or lease.state != "ready":
            return
        lease.keep_alive = seconds
        if lease.users > 0:
            return  # _release applies it
        if seconds == 0 and not lease.pinned:
            await self._unload_lease(lease, "keep_alive 0")
            return
        lease.expires_at = None if seconds < 0 or lease.pinned else self.clock() + seconds
        self._wake.set()

    async def unload(self, name: str) -> dict[str, Any]:
        """Unload ``name`` now; a busy model is unloaded as soon as its requests finish."""
        self.config_for(name)
        lease = self._leases.get(name)
        if lease is None:
            return {"model": name, "unloaded": False, "reason": "not loaded"}
        if lease.state == "loading":
            await lease.ready.wait()
            lease = self._leases.get(name)
            if lease is None:
                return {"model": name, "unloaded": False, "reason": "the load failed"}
        if lease.users > 0:
            lease.keep_alive = 0  # the last request out unloads it
            return {"model": name, "unloaded": False,
                    "reason": f"busy with {lease.users} request(s); it unloads when they finish"}
        if lease.state == "ready":
            await self._unload_lease(lease, "requested")
        return {"model": name, "unloaded": True, "freed": lease.size}

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, task_group: Any = None) -> None:
        """Start the keep-alive timer and load pinned models (a failure is reported, not fatal)."""
        self._closing = False
        tg = task_group or getattr(getattr(self.app, "bus", None), "_tg", None)
        if tg is not None and self._reaper_scope is None:
            tg.start_soon(self._reaper, name="pool:keep-alive")
        for name, cfg in self.models().items():
            if cfg.pin and cfg.backend in self.app.backends:
                try:
                    await self.load(name, reason="pinned: loaded at start")
                except ToolError as exc:
                    log.error("pinned model failed to load at start", model=name, error=str(exc))

    async def close(self) -> None:
        """Unload everything (waiting for nothing: requests are over when the app closes)."""
        self._closing = True
        if self._reaper_scope is not None:
            self._reaper_scope.cancel()
            self._reaper_scope = None
        for lease in list(self._leases.values()):
            if lease.state == "ready":
                await self._unload_lease(lease, "shutdown")
        if self._forkserver is not None:
            await anyio.to_thread.run_sync(self._forkserver.close)
            self._forkserver = None
        if self._cluster is not None:
            await anyio.to_thread.run_sync(self._cluster.close)

    async def __aenter__(self) -> ModelPool:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self.start(self._tg)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
        await self._tg.__aexit__(*exc)

    # -- status ------------------------------------------------------------------------------

    def model_status(self, name: str) -> dict[str, Any]:
        cfg = self.config_for(name)
        lease = self._leases.get(name)
        stats = self.stats.get(name, ModelStats())
        now = self.clock()
        out: dict[str, Any] = {
            "name": name, "backend": cfg.backend, "roles": self.roles_of(name),
            "default": name not in self.app.config.models, "file": cfg.file,
            "pinned": lease.pinned if lease is not None else cfg.pin,
            "keep_alive": self.keep_alive_of(cfg), "priority": cfg.priority, "state": "unloaded",
            "uses": stats.uses, "loads": stats.loads, "last_load_seconds": stats.load_seconds,
            "placement": cfg.placement, "node": None, "crashes": self.crash_count(name),
        }
        try:
            out["placement"] = self.placement_of(cfg, self.backend(cfg.backend))
        except ToolError:
            pass
        if name in self._failed:
            out["state"] = "failed"
            out["error"] = self._failed[name]
        try:
            est = self.estimate(name)
            out["estimate"] = est.total
            out["estimate_source"] = est.source
            out["device"] = est.device
        except ToolError as exc:
            out["estimate"] = None
            out["estimate_error"] = str(exc)
        if lease is not None:
            remaining = None if lease.expires_at is None else max(lease.expires_at - now, 0.0)
            out.update(state=lease.state, device=lease.device, reserved=lease.size, measured=lease.measured,
                       placement=lease.placement, node=lease.node,
                       pid=getattr(lease.invoker, "pid", None) if lease.placement == "process" else None,
                       busy=lease.users, loaded_at=lease.loaded_at, reason=lease.reason,
                       capabilities=list(lease.info.capabilities) if lease.info is not None else None,
                       keep_alive_remaining=round(remaining, 1) if remaining is not None else None,
                       until=("pinned" if lease.pinned else "in use" if lease.users else
                              "kept (keep_alive < 0)" if remaining is None else f"{remaining:.0f}s idle left"))
        return out

    def status(self) -> dict[str, Any]:
        """Configured and loaded models, memory per device, keep-alive remaining, pins."""
        return {
            "devices": [a.snapshot() for a in self._arbiters.values()],
            "models": [self.model_status(n) for n in sorted(self.models())],
        }


def _describe(backend: Any, handle: Any, spec: ModelSpec) -> ModelInfo:
    describe = getattr(backend, "describe", None)
    if describe is not None:
        return describe(handle, spec)
    # A duck-typed backend (no ModelBackend base): it serves what it declares, if anything.
    return ModelInfo(name=spec.name, backend=spec.config.backend,
                     capabilities=tuple(getattr(backend, "capabilities", ())), context_size=spec.config.context_size)


def _unload_and_collect(backend: ModelBackend, handle: Any) -> None:
    backend.unload(handle)
    del handle
    gc.collect()
