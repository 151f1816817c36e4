"""Daemon operations: health, readiness, Prometheus metrics, the event stream, the queue.

``DaemonOps(app)`` is created by ``loom serve`` next to the MCP surface and serves, on
the same port and behind the same guard:

* ``GET /healthz``: 200 while the process answers (public: no token, no data);
* ``GET /readyz``: 200 once started and until shutdown begins, 503 otherwise (public):
  ``starting``, ``draining`` (the listener stays open up to ``server.drain_timeout``), or
  ``degraded`` with the faults a plugin reported (a corrupt memory database) and what to do;
* ``GET /metrics``: Prometheus text format (tool requests and latencies, HTTP requests,
  model loads/evictions/unloads, memory per device, queue depths);
* ``GET /events``: the bus as server-sent events, one bounded ``drop_oldest`` mailbox
  per client (a slow client loses its oldest events, never slows the daemon);
  ``?kinds=ToolFinished,ModelLoaded`` filters by event kind;
* ``GET /api/status``: one JSON snapshot for the dashboard.

It also owns the shutdown state: ``begin_drain()`` (called when SIGTERM/SIGINT arrive)
flips readiness, ends event streams so the server can close their connections, and
makes new API requests answer 503 while in-flight ones finish.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.events import Event, ToolFinished
from core.logging import get_logger
from core.payloads import event_to_wire

from .mcp_tasks import TASKS_SERVICE

log = get_logger("loom.ops")

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
EVENT_CLIENT_MAXSIZE = 256
HEARTBEAT_S = 15.0
PLAN_KINDS = ("PlanReady", "PlanFinished")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class QueueFull(Exception):
    """More requests are waiting for a model than ``max_waiting`` allows (HTTP 429)."""


# --- the request queue ---------------------------------------------------------------------


@dataclass
class _Lane:
    """Requests for one model: at most ``slots`` run at once, the rest wait in FIFO order."""

    slots: int
    running: int = 0
    waiting: deque[Ticket] = field(default_factory=deque)
    served: int = 0


class Ticket:
    """One request's place in a model's queue; ``granted`` once it may run."""

    __slots__ = ("done", "event", "granted", "model")

    def __init__(self, model: str) -> None:
        self.model = model
        self.event = anyio.Event()
        self.granted = False
        self.done = False

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the turn; True once granted."""
        if not self.granted:
            with anyio.move_on_after(timeout):
                await self.event.wait()
        return self.granted


class RequestQueue:
    """Per-model admission for generation requests (a llama.cpp model runs one at a time).

    Waiting is reported (``position``), not timed out: a client that waits long gets its
    turn; only a queue longer than ``max_waiting`` is refused, with ``QueueFull``.
    Poll-style (``enter``/``wait``/``leave``) so a streaming generator can write queue
    notes to its client between waits without a task group across its yields.
    """

    def __init__(self, *, slots: int = 1, max_waiting: int = 64,
                 slots_for: Callable[[str], int] | None = None) -> None:
        self.slots = slots
        self.max_waiting = max_waiting
        self.slots_for = slots_for  # per model: its replicas run side by side
        self._lanes: dict[str, _Lane] = {}

    def lane(self, model: str) -> _Lane:
        lane = self._lanes.get(model)
        if lane is None:
            slots = self.slots
            if self.slots_for is not None:
                try:
                    slots = max(self.slots_for(model), 1)
                except Exception:  # an unknown model: the request fails later with the reason
                    slots = self.slots
            lane = self._lanes[model] = _Lane(slots)
        return lane

    def check(self, model: str) -> None:
        """Raise ``QueueFull`` now (before a response starts) when there is no room to wait."""
        lane = self.lane(model)
        if lane.running >= lane.slots and len(lane.waiting) >= self.max_waiting:
            raise QueueFull(f"{len(lane.waiting)} requests are already waiting for model {model!r} "
                            f"(the limit is {self.max_waiting}); retry shortly")

    def enter(self, model: str) -> Ticket:
        lane = self.lane(model)
        ticket = Ticket(model)
        if lane.running < lane.slots and not lane.waiting:
            lane.running += 1
            ticket.granted = True
            ticket.event.set()
        else:
            self.check(model)
            lane.waiting.append(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """Give the slot back (or the place in line); safe to call twice."""
        if ticket.done:
            return
        ticket.done = True
        lane = self.lane(ticket.model)
        if ticket.granted:
            lane.served += 1
            if lane.waiting:
                nxt = lane.waiting.popleft()
                nxt.granted = True  # the slot passes straight to the next in line
                nxt.event.set()
            else:
                lane.running -= 1
        elif ticket in lane.waiting:
            lane.waiting.remove(ticket)

    def position(self, ticket: Ticket) -> int:
        try:
            return self.lane(ticket.model).waiting.index(ticket) + 1
        except ValueError:
            return 0

    @contextlib.asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[None]:
        """Hold one of ``model``'s slots for the body (waiting in line first)."""
        ticket = self.enter(model)
        try:
            while not await ticket.wait(3600.0):
                pass
            yield
        finally:
            self.leave(ticket)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {m: {"running": ln.running, "waiting": len(ln.waiting), "served": ln.served}
                for m, ln in sorted(self._lanes.items())}

    @property
    def depth(self) -> int:
        return sum(len(ln.waiting) for ln in self._lanes.values())


# --- metrics ---------------------------------------------------------------------------------


class _Histogram:
    __slots__ = ("count", "counts", "recent", "sum")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0
        self.recent: deque[float] = deque(maxlen=256)

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(BUCKETS, seconds)
        if i < len(self.counts):
            self.counts[i] += 1
        self.count += 1
        self.sum += seconds
        self.recent.append(seconds)

    def quantile(self, q: float) -> float | None:
        if not self.recent:
            return None
        data = sorted(self.recent)
        return data[min(len(data) - 1, math.ceil(q * len(data)) - 1)]


class Metrics:
    """Counters fed from the bus (tool calls, pool events) and from HTTP responses."""

    def __init__(self) -> None:
        self.tools: dict[str, _Histogram] = defaultdict(_Histogram)
        self.tool_results: dict[tuple[str, str], int] = defaultdict(int)
        self.http: dict[tuple[str, str, int], int] = defaultdict(int)
        self.http_latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self.loads: dict[str, int] = defaultdict(int)
        self.load_seconds: dict[str, _Histogram] = defaultdict(_Histogram)
        self.evictions: dict[str, int] = defaultdict(int)
        self.unloads: dict[str, int] = defaultdict(int)
        self.load_failures: dict[str, int] = defaultdict(int)
        self.chat_tokens: dict[str, int] = defaultdict(int)

    def on_event(self, event: Event) -> None:
        kind = type(event).__name__
        if isinstance(event, ToolFinished):
            self.tools[event.tool].observe(event.seconds)
            self.tool_results[(event.tool, "ok" if event.ok else "error")] += 1
        elif kind == "ModelLoaded":
            self.loads[event.model] += 1  # type: ignore[attr-defined]
            self.load_seconds[event.model].observe(event.seconds)  # type: ignore[attr-defined]
        elif kind == "ModelEvicted":
            self.evictions[event.model] += 1  # type: ignore[attr-defined]
        elif kind == "ModelUnloaded":
            self.unloads[event.model] += 1  # type: ignore[attr-defined]
        elif kind == "ModelLoadFailed":
            self.load_failures[event.model] += 1  # type: ignore[attr-defined]

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        # Every label is from a closed set: an unauthenticated client choosing the method,
        # path or status text must not grow /metrics without bound.
        method = method if method in HTTP_METHODS else "other"
        status = status if 100 <= status <= 599 else 0
        self.http[(route, method, status)] += 1
        self.http_latency[route].observe(seconds)

    def tool_summary(self) -> list[dict[str, Any]]:
        out = []
        for tool, h in sorted(self.tools.items()):
            out.append({"tool": tool, "count": h.count, "ok": self.tool_results.get((tool, "ok"), 0),
                        "errors": self.tool_results.get((tool, "error"), 0),
                        "mean_s": round(h.sum / h.count, 4) if h.count else None,
                        "p50_s": _round(h.quantile(0.5)), "p95_s": _round(h.quantile(0.95))})
        return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _esc(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kw: Any) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kw.items()) + "}" if kw else ""


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def metric(self, name: str, kind: str, help_: str, samples: list[tuple[dict[str, Any], float]]) -> None:
        if name not in self._declared:
            self.lines.append(f"# HELP {name} {help_}")
            self.lines.append(f"# TYPE {name} {kind}")
            self._declared.add(name)
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(**labels)} {_num(value)}")

    def histogram(self, name: str, help_: str, label: str, hists: dict[str, _Histogram]) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} histogram")
        for key, h in sorted(hists.items()):
            running = 0
            for bound, n in zip(BUCKETS, h.counts, strict=True):
                running += n
                self.lines.append(f"{name}_bucket{_labels(**{label: key, 'le': _num(bound)})} {running}")
            self.lines.append(f"{name}_bucket{_labels(**{label: key, 'le': '+Inf'})} {h.count}")
            self.lines.append(f"{name}_sum{_labels(**{label: key})} {_num(h.sum)}")
            self.lines.append(f"{name}_count{_labels(**{label: key})} {h.count}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


# --- the middleware that counts HTTP requests -----------------------------------------------


class HttpMetrics:
    """ASGI middleware: requests, status codes and latency per route (first path segment)."""

    def __init__(self, app: ASGIApp, *, ops: DaemonOps) -> None:
        self.app = app
        self.ops = ops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        # An MCP GET is a standing listener (server-to-client stream), not work in flight:
        # a drain does not wait for it.
        listener = scope["method"] == "GET" and route_label(scope["path"]) == "/mcp"
        self.ops.in_flight += 1
        self.ops.listeners += listener

        async def counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            self.ops.in_flight -= 1
            self.ops.listeners -= listener
            self.ops.metrics.observe_http(route_label(scope["path"]), scope["method"], status,
                                          time.perf_counter() - started)


KNOWN_ROUTES = ("/v1/models", "/v1/chat/completions", "/v1/embeddings", "/v1/images/generations",
                "/v1/audio/speech", "/v1/audio/transcriptions", "/healthz", "/readyz", "/metrics", "/events",
                "/api/status", "/", "/login")


def route_label(path: str) -> str:
    """A bounded label set: known routes by name, everything else as ``other``."""
    if path in KNOWN_ROUTES or path.startswith("/mcp"):
        return "/mcp" if path.startswith("/mcp") else path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return "other"


# --- the daemon's operational state ---------------------------------------------------------


class DaemonOps:
    """Readiness, draining, metrics and the request queue of one ``loom serve``."""

    def __init__(self, app: Any, *, max_waiting: int = 64) -> None:
        self.app = app
        self.metrics = Metrics()
        self.queue = RequestQueue(max_waiting=max_waiting,
                                  slots_for=lambda model: app.pool.config_for(model).replicas)
        self.ready = False
        self.draining = anyio.Event()
        self.in_flight = 0
        self.listeners = 0  # of in_flight: MCP GET streams that only listen
        self.started_at = time.time()
        self._subs: list[Any] = []
        self._tg: Any = None

    # -- lifecycle --

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DaemonOps]:
        """Enter after the app started: subscribe the metrics, own a task group for
        background work (model loads requested over HTTP), mark ready."""
        bus = self.app.bus
        self._subs.append(bus.subscribe(Event, self.metrics.on_event, name="ops.metrics", plugin="core",
                                        maxsize=8192, overflow="drop_oldest"))
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.ready = True
                try:
                    yield self
                finally:
                    self.ready = False
                    self.draining.set()
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            for sub in self._subs:
                bus.unsubscribe(sub)
            self._subs.clear()

    def begin_drain(self) -> None:
        """Shutdown began: stop being ready, end event streams, refuse new API work."""
        if not self.draining.is_set():
            log.info("draining: finishing in-flight requests", in_flight=self.in_flight)
        self.ready = False
        self.draining.set()

    @property
    def busy(self) -> bool:
        """Requests doing work are in flight (standing MCP listeners do not count), or MCP tasks
        still run (a task accepted before the drain finishes, and its client can fetch the result)."""
        tasks = self.app.services.get(TASKS_SERVICE)
        return self.in_flight - self.listeners > 0 or (tasks is not None and tasks.running() > 0)

    def spawn(self, func: Any, *args: Any) -> bool:
        if self._tg is None:
            return False
        self._tg.start_soon(func, *args)
        return True

    @property
    def pool(self) -> Any:
        return self.app.pool

    # -- snapshots --

    def pool_status(self) -> dict[str, Any]:
        try:
            return self.pool.status()
        except Exception as exc:  # a broken model config must not take /metrics down
            return {"devices": [], "models": [], "error": str(exc)}

    def status(self) -> dict[str, Any]:
        """Everything the dashboard shows, in one JSON object."""
        recent = list(self.app.bus.recent)
        events = [event_to_wire(e) for e in recent[-100:]]
        plans = [event_to_wire(e) for e in recent if type(e).__name__ in PLAN_KINDS][-20:]
        return {
            "server": {**self.app.status(), "ready": self.ready, "draining": self.draining.is_set(),
                       "in_flight": self.in_flight, "time": time.time()},
            "pool": self.pool_status(),
            "queue": {"chat": self.queue.snapshot(), "depth": self.queue.depth},
            "tools": self.metrics.tool_summary(),
            "plans": plans,
            "events": events,
        }

    def prometheus(self) -> str:
        m = self.metrics
        w = _Writer()
        w.metric("loom_info", "gauge", "Loom version.", [({"version": self.app.version}, 1)])
        w.metric("loom_uptime_seconds", "gauge", "Seconds since the daemon started.",
                 [({}, round(time.time() - self.started_at, 3))])
        w.metric("loom_ready", "gauge", "1 when serving, 0 while starting or draining.", [({}, int(self.ready))])
        w.metric("loom_tool_requests_total", "counter", "Tool calls by tool and outcome.",
                 [({"tool": t, "status": s}, n) for (t, s), n in sorted(m.tool_results.items())])
        w.histogram("loom_tool_duration_seconds", "Tool call latency.", "tool", m.tools)
        w.metric("loom_http_requests_total", "counter", "HTTP requests by route, method and status.",
                 [({"route": r, "method": meth, "status": s}, n) for (r, meth, s), n in sorted(m.http.items())])
        w.histogram("loom_http_request_duration_seconds", "HTTP request latency (to the end of the body).",
                    "route", m.http_latency)
        w.metric("loom_http_in_flight", "gauge", "HTTP requests being served.", [({}, self.in_flight)])
        w.metric("loom_model_loads_total", "counter", "Model loads.",
                 [({"model": k}, v) for k, v in sorted(m.loads.items())])
        w.histogram("loom_model_load_seconds", "Model load time.", "model", m.load_seconds)
        w.metric("loom_model_evictions_total", "counter", "Idle models unloaded to make room for another.",
                 [({"model": k}, v) for k, v in sorted(m.evictions.items())])
        w.metric("loom_model_unloads_total", "counter", "Models unloaded (keep-alive, request, shutdown).",
                 [({"model": k}, v) for k, v in sorted(m.unloads.items())])
        w.metric("loom_model_load_failures_total", "counter", "Model loads that failed.",
                 [({"model": k}, v) for k, v in sorted(m.load_failures.items())])
        status = self.pool_status()
        devices = status.get("devices", [])
        w.metric("loom_memory_budget_bytes", "gauge", "Memory budget per device.",
                 [({"device": d["device"]}, d["budget"]) for d in devices])
        w.metric("loom_memory_used_bytes", "gauge", "Memory reserved by resident models per device.",
                 [({"device": d["device"]}, d["used"]) for d in devices])
        w.metric("loom_memory_peak_bytes", "gauge", "Peak reserved memory per device.",
                 [({"device": d["device"]}, d.get("peak", 0)) for d in devices])
        resident = [mo for mo in status.get("models", []) if mo.get("state") not in (None, "unloaded")]
        w.metric("loom_model_loaded", "gauge", "1 for each resident model (by state).",
                 [({"model": mo["name"], "device": mo.get("device", "cpu"), "state": mo["state"]}, 1)
                  for mo in resident])
        w.metric("loom_model_memory_bytes", "gauge", "Memory reserved by each resident model.",
                 [({"model": mo["name"], "device": mo.get("device", "cpu")}, mo.get("reserved") or 0)
                  for mo in resident])
        w.metric("loom_queue_depth", "gauge", "Requests waiting: for memory on a device (pool) or for a "
                 "model's turn to generate (chat).",
                 [({"queue": "pool", "name": d["device"]}, d.get("waiting", 0)) for d in devices]
                 + [({"queue": "chat", "name": k}, v["waiting"]) for k, v in self.queue.snapshot().items()])
        w.metric("loom_events_published_total", "counter", "Events published on the bus.",
                 [({}, self.app.bus.published)])
        w.metric("loom_events_dropped_total", "counter", "Events dropped by full subscriber mailboxes.",
                 [({"subscriber": s.name}, s.dropped) for s in self.app.bus.subscriptions if s.dropped])
        return w.text()

    # -- routes --

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
            Route("/readyz", self.readyz, methods=["GET", "HEAD"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/events", self.events, methods=["GET"]),
            Route("/api/status", self.status_endpoint, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        faults = getattr(self.app, "faults", None)
        if self.ready and faults:  # e.g. a corrupt memory database: the message says how to recover
            # Public path: name the plugins only; the details (paths, the fix) are in the
            # authenticated /api/status, `loom plugins` and the log.
            return JSONResponse({"status": "degraded", "faults": sorted(faults),
                                 "hint": "see /api/status (server.faults) or the daemon log for what to do"},
                                status_code=503)
        if self.ready:
            # Still ready (other models serve), but a model that crashed too often is named here.
            failed = {m["name"]: m.get("error", "") for m in self.pool_status().get("models", [])
                      if m.get("state") == "failed"}
            return JSONResponse({"status": "ready", **({"models_failed": failed} if failed else {})})
        state = "draining" if self.draining.is_set() else "starting"
        return JSONResponse({"status": state}, status_code=503, headers={"Retry-After": "1"})

    async def metrics_endpoint(self, request: Request) -> Response:
        return PlainTextResponse(self.prometheus(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def status_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.status(), headers={"Cache-Control": "no-store"})

    async def events(self, request: Request) -> Response:
        kinds = {k for k in request.query_params.get("kinds", "").split(",") if k}
        unknown = kinds - set(Event.registry)
        if unknown:
            return JSONResponse({"error": f"unknown event kinds: {sorted(unknown)}; known: "
                                          f"{sorted(Event.registry)}"}, status_code=400)
        try:
            maxsize = max(1, min(int(request.query_params.get("buffer", EVENT_CLIENT_MAXSIZE)), 4096))
        except ValueError:
            return JSONResponse({"error": "buffer must be an integer"}, status_code=400)
        send, receive = anyio.create_memory_object_stream[Event](0)

        async def forward(event: Event) -> None:
            if kinds and type(event).__name__ not in kinds:
                return
            try:
                await send.send(event)  # waits for the client: the mailbox below is the bound
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

        sub = self.app.bus.subscribe(Event, forward, name=f"events-client:{id(receive):x}", plugin="core",
                                     maxsize=maxsize, overflow="drop_oldest")

        async def body() -> AsyncIterator[bytes]:
            reported = 0
            try:
                yield b"retry: 2000\n: connected to the Loom event stream\n\n"
                with receive:
                    while not self.draining.is_set():
                        event = None
                        with anyio.move_on_after(HEARTBEAT_S) as scope:
                            async with _until(self.draining):
                                event = await receive.receive()
                        if scope.cancelled_caught or event is None:
                            yield b": keep-alive\n\n"
                            continue
                        if sub.dropped > reported:
                            yield f": dropped {sub.dropped - reported} events (client too slow)\n\n".encode()
                            reported = sub.dropped
                        data = msgspec.json.encode(event_to_wire(event))  # large bytes as references
                        yield b"event: " + type(event).__name__.encode() + b"\nid: " + event.id.encode() + \
                            b"\ndata: " + data + b"\n\n"
            finally:
                self.app.bus.unsubscribe(sub)
                send.close()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@contextlib.asynccontextmanager
async def _until(event: anyio.Event) -> AsyncIterator[None]:
    """Run the body, cancelled as soon as ``event`` is set (a drain ends the stream)."""
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
