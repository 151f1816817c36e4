"""The daemon's HTTP app: MCP over streamable HTTP, behind Loom's security checks.

``build_http_app(app)`` returns a Starlette app with MCP at ``config.server.mcp_path``.
More surfaces (the OpenAI-compatible API, ``/healthz``, ``/metrics``, a dashboard) are
added as ``extra_routes``; every route sits behind the same ASGI guard:

* Host must be a loopback name, the bound host, or in ``server.allowed_hosts``
  (421 otherwise); a browser Origin must be loopback or in ``server.allowed_origins``
  (403 otherwise). This is the DNS-rebinding defence.
* ``Authorization: Bearer <token>`` (or ``x-api-key: <token>``, as Anthropic's SDK sends
  it) must match the token file (401 otherwise), compared with ``hmac.compare_digest``.
  The token is generated at first start into a mode-0600 file (``server.token_file`` or ``<data_dir>/token``).
* Request bodies are capped at ``server.max_body_bytes`` (413), and at 8 KiB on the
  paths that need no token (``/login``, the health probes): nobody unauthenticated can
  make the daemon buffer more than that.

Idle MCP sessions expire after ``server.session_idle_timeout``; at most
``server.max_sessions`` are open at once and ``server.max_sessions_per_client`` per
client (address and User-Agent). A new session beyond either cap closes the idlest
one (the client's own, for the per-client cap) instead of being refused, so a client
that never sends DELETE cannot lock the others out.

Every tool profile (``core.profiles``) is served at ``<mcp_path>/<profile>``, each with
its own session manager (and so its own caps); each session keeps its SSE events for
resumption (``Last-Event-ID``, see ``core.surfaces.event_store``).
"""

from __future__ import annotations

import contextlib
import contextvars
import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import get_logger

log = get_logger("loom.http")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
PUBLIC_MAX_BODY = 8 * 1024  # bytes any unauthenticated path reads at most (the login form)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the token -----------------------------------------------------------------------


def token_path(config: Any) -> Path:
    explicit = config.server.token_file
    return Path(explicit).expanduser() if explicit else config.data_dir / "token"


def ensure_token(config: Any) -> tuple[str, Path]:
    """The bearer token and its file, generating both on first start (mode 0600)."""
    path = token_path(config)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # never leave a readable token behind
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise ValueError(f"the token in {path} is too short; delete the file to generate a new one") from None
        return token, path
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token, path


# --- the guard -----------------------------------------------------------------------


def _host_only(value: str) -> str:
    """``example.com:8765`` / ``[::1]:8765`` → the host without the port."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SecurityGuard:
    """ASGI middleware for every route: Host/Origin allowlist, bearer token, body cap."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_hosts: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        max_body: int,
        public_paths: Sequence[str] = (),
        cookie_paths: Sequence[str] = (),
        cookie_actions: Sequence[str] = (),
        public_max_body: int = PUBLIC_MAX_BODY,
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.any_host = "*" in allowed_hosts
        self.hosts = {_host_only(h) for h in allowed_hosts if h != "*"}
        self.any_origin = "*" in allowed_origins
        self.origins = {o.rstrip("/").lower() for o in allowed_origins if o != "*"}
        self.max_body = max_body
        # Paths anyone can reach read at most a few KB: an unauthenticated client must not
        # make the daemon buffer megabytes (40 concurrent 16 MiB logins cost 560 MB of RSS).
        self.public_max_body = min(public_max_body, max_body)
        self.public = frozenset(public_paths)
        # The dashboard's HttpOnly cookie stands in for the header, for GETs on these paths only.
        self.cookie_paths = frozenset(cookie_paths)
        # ...and for POSTs under these prefixes (the dashboard's buttons) when the request also
        # carries X-Loom-Dashboard: 1, a header no other origin can send without a preflight.
        self.cookie_actions = tuple(cookie_actions)

    def _host_ok(self, host: str | None) -> bool:
        if not host:
            return False
        name = _host_only(host)
        return self.any_host or is_loopback(name) or name in self.hosts

    def _origin_ok(self, origin: str | None) -> bool:
        if origin is None:
            return True  # not a browser (or a same-origin request)
        origin = origin.rstrip("/").lower()
        if self.any_origin or origin in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.hostname is not None and is_loopback(parts.hostname)

    def _token_ok(self, header: str | None, api_key: str | None = None) -> bool:
        if self.token is None:
            return True
        if api_key:  # Anthropic's SDK sends the key as ``x-api-key``
            return hmac.compare_digest(api_key.strip().encode(), self.token)
        if not header or not header[:7].lower() == "bearer ":
            return False
        return hmac.compare_digest(header[7:].strip().encode(), self.token)

    def _cookie_ok(self, scope: Scope, headers: Headers) -> bool:
        method, path = scope["method"], scope["path"]
        reading = method in ("GET", "HEAD") and path in self.cookie_paths
        acting = (method == "POST" and path.startswith(self.cookie_actions) and bool(self.cookie_actions)
                  and headers.get("x-loom-dashboard") == "1")
        if self.token is None or not (reading or acting):
            return False
        from .dashboard import cookie_token

        value = cookie_token(headers.get("cookie"))
        return bool(value) and hmac.compare_digest(value.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        _error = _openai_error if scope["path"].startswith("/v1/") else _plain_error
        if not self._host_ok(headers.get("host")):
            await _error(421, "Misdirected request: this Host is not allowed (add it to server.allowed_hosts)")(
                scope, receive, send)
            return
        if not self._origin_ok(headers.get("origin")):
            await _error(403, "Forbidden: this Origin is not allowed (add it to server.allowed_origins)")(
                scope, receive, send)
            return
        if (scope["path"] not in self.public
                and not self._token_ok(headers.get("authorization"), headers.get("x-api-key"))
                and not self._cookie_ok(scope, headers)):
            resp = _error(401, "Unauthorized: send 'Authorization: Bearer <token>' (the token is in the "
                               "file `loom serve` printed at start)")
            resp.headers["WWW-Authenticate"] = "Bearer"
            await resp(scope, receive, send)
            return
        limit = self.public_max_body if scope["path"] in self.public else self.max_body
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _error(413, f"Request body larger than {limit} bytes")(scope, receive, send)
            return
        await self._capped(scope, receive, send, limit, _error)

    async def _capped(self, scope: Scope, receive: Receive, send: Send, limit: int, _error: Any) -> None:
        """Count streamed (chunked) bodies too: past the cap the client gets 413, the app
        sees a disconnect, and whatever the app does after that is dropped quietly (no
        second response, no traceback in the log)."""
        seen = 0
        refused = False
        started = False

        async def wrapped_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    if not started:
                        await _error(413, f"Request body larger than {limit} bytes")(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, wrapped_receive, guarded_send)
        except Exception:
            if not refused:
                raise


def _plain_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _openai_error(status: int, message: str) -> JSONResponse:
    """The OpenAI error shape for ``/v1/`` paths, so SDK clients show the message."""
    kind = {401: "authentication_error", 413: "invalid_request_error"}.get(status, "invalid_request_error")
    code = {401: "invalid_api_key", 413: "request_too_large", 421: "host_not_allowed", 403: "origin_not_allowed"}
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code.get(status)}},
                        status_code=status)


_error = _plain_error


async def _http_error(request: Any, exc: HTTPException) -> JSONResponse:
    """Starlette's own 404/405/400 answers as JSON (the OpenAI shape under /v1/), like every
    other error; its default is a text/plain body."""
    make = _openai_error if request.url.path.startswith("/v1/") else _plain_error
    detail = {404: "Not found: no such path (see docs/operations.md for the routes)",
              405: f"Method {request.method[:20]!r} is not allowed on this path"}.get(exc.status_code,
                                                                                   str(exc.detail)[:200])
    resp = make(exc.status_code, detail)
    for key, value in (exc.headers or {}).items():
        resp.headers[key] = value
    return resp


# --- MCP sessions ----------------------------------------------------------------------

_session_client: contextvars.ContextVar[str] = contextvars.ContextVar("loom_session_client", default="?")


def client_key(scope: Scope) -> str:
    """Who opens a session: the peer address and the client's User-Agent (every client
    shares the one bearer token, so the token alone cannot tell them apart)."""
    peer = scope.get("client") or ("?", 0)
    agent = Headers(scope=scope).get("user-agent", "")[:200]
    return f"{peer[0]}|{agent}"


def _session_manager_class() -> type:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    class LoomSessionManager(StreamableHTTPSessionManager):
        """The SDK's session manager with per-client caps and eviction of the idlest session.

        When a client already holds ``per_client`` sessions, or all ``max_sessions`` are
        open, a new session does not get 503: the idlest session (no request in flight,
        least recently used; for the per-client cap, that client's own) is closed to make
        room. One client that never sends DELETE cannot lock the others out.
        """

        def __init__(self, *args: Any, per_client: int, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.per_client = per_client
            self._owner: dict[str, str] = {}
            self._last_used: dict[str, float] = {}
            self.evicted = 0

        async def _handle_stateful_request(self, scope: Scope, receive: Receive, send: Send) -> None:
            sid = Headers(scope=scope).get("mcp-session-id")
            if sid in self._last_used:
                self._last_used[sid] = anyio.current_time()
            _session_client.set(client_key(scope))
            await super()._handle_stateful_request(scope, receive, send)

        def _admit_session(self, requestor: Any) -> Any:
            client = _session_client.get()
            live = [sid for sid in list(self._owner) if sid in self._server_instances]
            for sid in list(self._owner):
                if sid not in self._server_instances:
                    self._owner.pop(sid, None)
                    self._last_used.pop(sid, None)
            mine = [sid for sid in live if self._owner.get(sid) == client]
            if len(mine) >= self.per_client:
                self._evict(self._idlest(mine, busy_ok=True))
            elif self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
                victim = self._idlest(live, busy_ok=False)
                if victim is None:  # all busy: take from whoever holds the most sessions
                    counts: dict[str, int] = {}
                    for sid in live:
                        counts[self._owner[sid]] = counts.get(self._owner[sid], 0) + 1
                    greedy = max(counts, key=lambda c: counts[c], default=None)
                    if greedy is not None and counts[greedy] > 1:
                        victim = self._idlest([s for s in live if self._owner[s] == greedy], busy_ok=True)
                self._evict(victim)
            transport = super()._admit_session(requestor)
            if transport is not None:
                self._owner[transport.mcp_session_id] = client
                self._last_used[transport.mcp_session_id] = anyio.current_time()
            return transport

        def _idlest(self, sids: list[str], *, busy_ok: bool) -> str | None:
            def busy(sid: str) -> bool:
                t = self._server_instances.get(sid)
                return t is not None and getattr(t, "_requests_in_flight", 0) > 0

            pool = [s for s in sids if not busy(s)] or (sids if busy_ok else [])
            return min(pool, key=lambda s: self._last_used.get(s, 0.0), default=None)

        def _evict(self, sid: str | None) -> None:
            if sid is None:
                return
            transport = self._server_instances.pop(sid, None)
            self._session_owners.pop(sid, None)
            self._owner.pop(sid, None)
            self._last_used.pop(sid, None)
            if transport is None:
                return
            self.evicted += 1
            log.info("closing the idlest MCP session to make room", session=sid[:8])
            if transport.idle_scope is not None:
                transport.idle_scope.cancel()  # ends its server task, which terminates the transport

    return LoomSessionManager


# --- connections -----------------------------------------------------------------------


def http_protocol(*, header_timeout: float, max_connections: int) -> type:
    """uvicorn's h11 protocol with the limits it lacks: a header timeout and a connection cap.

    * A connection must deliver a complete request head within ``header_timeout``
      seconds of opening (or of its previous response): slowloris clients that dribble
      headers, and connections opened and never used, are closed.
    * Past ``max_connections`` open connections a new one is closed at once, so idle
      sockets cannot exhaust file descriptors; requests on open connections are served.
    Idle keep-alive connections are closed after uvicorn's ``timeout_keep_alive``.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LoomH11Protocol(H11Protocol):
        _header_timer: Any = None
        refused = 0
        timed_out = 0

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                type(self).refused += 1
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                type(self).timed_out += 1
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
                self._disarm()  # the request head is complete

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()  # the next request's head gets the same deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return LoomH11Protocol


# --- JSON-RPC ids on /mcp --------------------------------------------------------------


def _bad_id(body: bytes) -> bool:
    """Whether a JSON-RPC message (or batch) in ``body`` carries an id MCP does not accept.

    The SDK would read such a message as a notification and answer 202 with nothing:
    the client then waits forever for a response. Bodies that are not JSON are left to
    the SDK (it answers a parse error).
    """
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return False
    items = obj if isinstance(obj, list) else [obj]
    return any(isinstance(m, dict) and "id" in m and not (
        isinstance(m["id"], str) or (isinstance(m["id"], int) and not isinstance(m["id"], bool))) for m in items)


class CheckedMcpEndpoint:
    """The SDK's endpoint behind a check of POSTs: JSON content and valid JSON-RPC ids (else
    400 + a JSON-RPC error).

    A class, not a function: Starlette treats a plain function as a request handler.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = self.inner
        if scope["method"] != "POST":
            await inner(scope, receive, send)
            return
        ctype = Headers(scope=scope).get("content-type", "")
        if not ctype.lower().startswith("application/json"):  # the SDK's own answer is a bare text/plain 400
            await JSONResponse({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32600, "message": "Invalid Request: POST a JSON-RPC message with "
                                           f"Content-Type: application/json (got {ctype[:80]!r})"}},
                               status_code=400)(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:  # the guard has already capped the size
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _bad_id(body):
            await JSONResponse({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32600, "message": "Invalid Request: id must be a string or an integer"}},
                status_code=400)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await inner(scope, replay, send)


# --- abandoned requests ----------------------------------------------------------------

CLIENT_CLOSED = 499  # nginx's "client closed request": logged and counted, never seen by the client


class ClientWatch:
    """What ``cancel_on_disconnect`` yields: ``gone`` turns True when the client left."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        self.gone = False


@contextlib.asynccontextmanager
async def cancel_on_disconnect(request: Any) -> AsyncIterator[ClientWatch]:
    """Run the body, cancelled as soon as the HTTP client disconnects.

    Reads (and caches) the request body first, so the handler inside can still call
    ``request.body()``/``request.form()``; then a watcher waits on the ASGI ``receive``
    channel, which yields ``http.disconnect`` when the client goes away. A request that
    waits in a queue or runs a model for a client that left is cancelled, giving its
    slot to the next caller. After the block, ``watch.gone`` says whether the client
    left (answer with ``CLIENT_CLOSED``: nobody will read it)::

        async with cancel_on_disconnect(request) as watch:
            response = await work()
        if watch.gone:
            return Response(status_code=CLIENT_CLOSED)
    """
    await request.body()
    watch = ClientWatch()
    try:
        async with anyio.create_task_group() as tg:

            async def watcher() -> None:
                while True:
                    message = await request.receive()
                    if message["type"] == "http.disconnect":
                        watch.gone = True
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watcher)
            try:
                yield watch
            finally:
                tg.cancel_scope.cancel()  # the work finished (or was cancelled): stop watching
    except BaseExceptionGroup as group:
        # The body's own error, not wrapped: callers map exception types to HTTP answers.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def api_endpoint(handler: Callable[[Any], Any], draining: Any, *, shutting_down: Callable[[], Any],
                 on_error: Callable[[Exception], Any]) -> Callable[[Any], Any]:
    """An API route's endpoint: refused while the daemon drains, cancelled when the client
    leaves (answered ``CLIENT_CLOSED``), errors turned into the API's own error shape by
    ``on_error`` (which re-raises what it does not know: a 500). One skeleton for the
    OpenAI, Anthropic and Ollama surfaces, which differ only in their error bodies."""
    from starlette.requests import ClientDisconnect
    from starlette.responses import Response

    async def endpoint(request: Any) -> Any:
        if draining.is_set():
            return shutting_down()
        try:
            # A client that leaves (while queued, or while the model runs) cancels its work.
            async with cancel_on_disconnect(request) as watch:
                response = await handler(request)
        except ClientDisconnect:
            return Response(status_code=CLIENT_CLOSED)
        except Exception as exc:
            return on_error(exc)
        return Response(status_code=CLIENT_CLOSED) if watch.gone else response

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint


# --- the app -------------------------------------------------------------------------


def build_http_app(
    app: Any,
    *,
    auth: bool | None = None,
    host: str | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    surface: Any = None,
    public_paths: Sequence[str] = (),
    cookie_paths: Sequence[str] = (),
    cookie_actions: Sequence[str] = (),
    services: Sequence[Callable[[], contextlib.AbstractAsyncContextManager[Any]]] = (),
    draining: Any = None,
) -> Starlette:
    """The daemon's ASGI app for ``app`` (a ``Loom``); starting it starts ``app`` too.

    ``auth=False`` (``--no-auth``) is refused unless ``host`` is a loopback address.
    ``public_paths`` need no token (health probes); ``cookie_paths`` also accept the
    dashboard's cookie on GET, ``cookie_actions`` (path prefixes) on POST with the
    ``X-Loom-Dashboard: 1`` header; ``services`` are entered, in order, once the app runs.
    ``draining``: the daemon's shutdown event (``DaemonOps.draining``); once it is set every MCP
    path refuses new tool calls while the calls in flight finish.
    """
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
    from mcp.server.transport_security import TransportSecuritySettings

    from core.profiles import profiles

    from .event_store import resumable_session_manager
    from .mcp import McpSurface

    cfg = app.config.server
    host = host or cfg.host
    auth = cfg.auth if auth is None else auth
    if not auth and not is_loopback(host):
        raise ValueError(f"refusing to serve without authentication on {host}: --no-auth is only allowed "
                         "on a loopback address (127.0.0.1, ::1, localhost)")
    token = ensure_token(app.config)[0] if auth else None
    surface = surface or McpSurface(app, draining=draining)
    if draining is not None:
        surface.draining = draining
    # The full tool list at mcp_path; each tool profile at mcp_path/<profile>.
    surfaces = [(cfg.mcp_path, surface)]
    for profile in profiles(app.config):
        surfaces.append((f"{cfg.mcp_path.rstrip('/')}/{profile}", McpSurface(app, profile=profile,
                                                                              draining=surface.draining)))
    manager_class = _session_manager_class()

    def manager_for(server: Any) -> Any:
        return resumable_session_manager(
            base=manager_class,
            app=server,
            per_client=cfg.max_sessions_per_client,
            # Host/Origin are checked by SecurityGuard for every route.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            session_idle_timeout=cfg.session_idle_timeout,
            max_sessions=cfg.max_sessions,
            max_request_body_size=cfg.max_body_bytes,
        )

    managers = [(path, s, manager_for(s.server)) for path, s in surfaces]
    allowed_hosts = list(cfg.allowed_hosts)
    if host not in ("0.0.0.0", "::", ""):
        allowed_hosts.append(host)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with app, contextlib.AsyncExitStack() as stack:
            for _path, s, manager in managers:
                await stack.enter_async_context(s.running())
                await stack.enter_async_context(manager.run())
            for service in services:
                await stack.enter_async_context(service())
            yield

    routes: list[BaseRoute] = [Route(path, endpoint=CheckedMcpEndpoint(StreamableHTTPASGIApp(manager)),
                                     methods=["GET", "POST", "DELETE"])
                               for path, _s, manager in managers]
    routes.extend(extra_routes)
    star = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    star.state.loom = app
    star.state.mcp = surface
    star.add_middleware(
        SecurityGuard,
        token=token,
        allowed_hosts=allowed_hosts,
        allowed_origins=cfg.allowed_origins,
        max_body=cfg.max_body_bytes,
        public_paths=public_paths,
        cookie_paths=cookie_paths,
        cookie_actions=cookie_actions,
    )
    return star
