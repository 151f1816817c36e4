"""Run the Loom daemon: MCP over streamable HTTP (default http://127.0.0.1:8765/mcp), the
OpenAI-compatible API under /v1, /healthz, /readyz, /metrics, /events and the dashboard at /.

Prints where it listens and where the bearer token is. Holds an exclusive lock on the
data dir (a second daemon on the same dir stops with a clear message). SIGINT/SIGTERM:
stop accepting, let in-flight requests finish (up to ``server.shutdown_grace`` seconds),
unload models, close the plugins (the memory database), exit 0. While in-flight requests
finish, the listener stays open for up to ``server.drain_timeout`` seconds so ``/readyz``
answers 503. Connection limits: ``server.header_timeout``, ``server.idle_timeout``,
``server.max_connections`` (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

HELP = "run the daemon: MCP, the OpenAI-compatible API, metrics and the dashboard over HTTP"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default: server.port, 8765; 0 picks a free one)")
    p.add_argument("--no-auth", action="store_true",
                   help="do not require the bearer token (only allowed on a loopback address)")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    from core import datadir
    from core.app import Loom
    from core.client import clear_endpoint, write_endpoint
    from core.config import load_config
    from core.surfaces.http import build_http_app, ensure_token, is_loopback, token_path

    config = load_config(getattr(args, "config", None))
    cfg = config.server
    host = args.host or cfg.host
    port = cfg.port if args.port is None else args.port
    auth = cfg.auth and not args.no_auth
    if not auth and not is_loopback(host):
        print(f"loom: refusing --no-auth on {host}: without the token only a loopback address is allowed",
              file=sys.stderr)
        return 2
    # One daemon per data dir: take the lock before any plugin opens its files.
    datadir.hold_or_exit(config.data_dir)
    app = Loom.create(config)
    try:
        asgi, ops = _build(app, auth=auth, host=host, token=ensure_token(app.config)[0] if auth else None,
                           build_http_app=build_http_app)
    except ValueError as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 2
    try:
        # Bind before anything slow so clients can connect (and queue) at once.
        sock = _bind(host, port)
    except OSError as exc:
        print(f"loom: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    # Where `loom models load` and friends find this daemon (removed again on exit).
    connect = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else shown)
    write_endpoint(app.config.data_dir, f"http://{connect}:{bound}{cfg.mcp_path}")
    print(f"loom: MCP at http://{shown}:{bound}{cfg.mcp_path}", flush=True)
    print(f"loom: OpenAI API at http://{shown}:{bound}/v1", flush=True)
    print(f"loom: dashboard at http://{shown}:{bound}/ (sign in with the token, or open /?token=TOKEN once)",
          flush=True)
    if auth:
        print(f"loom: bearer token in {token_path(app.config)} (send 'Authorization: Bearer <token>')", flush=True)
    else:
        print("loom: authentication disabled (--no-auth, loopback only)", flush=True)

    import uvicorn

    from core.surfaces.http import http_protocol

    config = uvicorn.Config(asgi, lifespan="on", log_level="warning", access_log=False,
                            timeout_graceful_shutdown=cfg.shutdown_grace, log_config=None,
                            http=http_protocol(header_timeout=cfg.header_timeout,
                                               max_connections=cfg.max_connections),
                            timeout_keep_alive=max(1, round(cfg.idle_timeout)))

    # sse-starlette (the MCP SDK's SSE responses) ends every stream the moment SIGTERM
    # arrives, cutting tool calls in flight; Loom ends them itself once the work is done.
    from sse_starlette.sse import AppStatus

    AppStatus.disable_automatic_graceful_drain()

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            ops.begin_drain()  # readiness off, event streams end, new API and MCP tool calls refused
            started = time.monotonic()
            grace = max(0.0, cfg.shutdown_grace)
            # 1. Keep listening while work is in flight (at most drain_timeout): load
            #    balancers polling /readyz get 503 rather than a refused connection.
            while ops.busy and time.monotonic() - started < min(cfg.drain_timeout, grace):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            for server in self.servers:
                server.close()
            # 2. Let the calls in flight finish (their SSE streams included), up to the grace.
            while ops.busy and time.monotonic() - started < grace:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.05)
            AppStatus.should_exit = True  # 3. now end the standing streams (idle MCP listeners)
            self.config.timeout_graceful_shutdown = max(1.0, grace - (time.monotonic() - started))
            await super().shutdown(sockets)

    server = Server(config)
    # uvicorn turns SIGINT/SIGTERM into a graceful shutdown, then re-raises the signal
    # with the previous handler: make that a normal exit.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run(sockets=[sock])
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        clear_endpoint(app.config.data_dir)
    if not server.started:
        print("loom: the daemon failed to start (see the errors above)", file=sys.stderr, flush=True)
        return 1
    print("loom: stopped", file=sys.stderr, flush=True)
    return 0


def _build(app: object, *, auth: bool, host: str, token: str | None, build_http_app: object) -> tuple:
    """The HTTP app with every surface: MCP, the OpenAI, Anthropic and Ollama APIs, operations and the dashboard."""
    from core.surfaces.anthropic import AnthropicSurface
    from core.surfaces.dashboard import COOKIE_ACTIONS, COOKIE_PATHS, Dashboard
    from core.surfaces.dashboard.api import DashboardApi, RequestLog, RequestTracker
    from core.surfaces.ollama import OllamaSurface
    from core.surfaces.openai import OpenAISurface
    from core.surfaces.ops import DaemonOps, HttpMetrics

    ops = DaemonOps(app)
    openai = OpenAISurface(app, ops)
    ollama = OllamaSurface(app, ops)
    anthropic = AnthropicSurface(app, openai)
    dashboard = Dashboard(token)
    requests = RequestLog(app)
    api = DashboardApi(app, requests)
    asgi = build_http_app(  # type: ignore[operator]
        app, auth=auth, host=host,
        extra_routes=[*openai.routes(), *anthropic.routes(), *api.routes(), *ollama.routes(), *ops.routes(),
                      *dashboard.routes()],
        public_paths=("/healthz", "/readyz", "/", "/login"),
        cookie_paths=tuple(p for p in COOKIE_PATHS if p != "/"),
        cookie_actions=COOKIE_ACTIONS,
        services=[ops.running, lambda: _subscribed(app, requests)],
        draining=ops.draining,  # MCP sessions refuse new tool calls during the drain too
    )
    asgi.add_middleware(RequestTracker, log=requests)
    asgi.add_middleware(HttpMetrics, ops=ops)
    asgi.state.ops = ops
    return asgi, ops


@contextlib.asynccontextmanager
async def _subscribed(app: Any, requests: Any) -> AsyncIterator[None]:
    """The dashboard's request log follows tool calls on the bus while the daemon runs."""
    from core.events import Event

    sub = app.bus.subscribe(Event, requests.on_event, name="dashboard.requests", plugin="core", maxsize=4096,
                            overflow="drop_oldest")
    try:
        yield
    finally:
        app.bus.unsubscribe(sub)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
