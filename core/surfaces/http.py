"""The daemon's HTTP app: MCP over streamable HTTP, behind Loom's security checks.

``build_http_app(app)`` returns a Starlette app with MCP at ``config.server.mcp_path``.
More surfaces (the OpenAI-compatible API, ``/healthz``, ``/metrics``, a dashboard) are
added as ``extra_routes``; every route sits behind the same ASGI guard:

* Host must be a loopback name, the bound host, or in ``server.allowed_hosts``
  (421 otherwise); a browser Origin must be loopback or in ``server.allowed_origins``
  (403 otherwise). This is the DNS-rebinding defence.
* ``Authorization: Bearer <token>`` must match the token file (401 otherwise),
  compared with ``hmac.compare_digest``. The token is generated at first start into
  a mode-0600 file (``server.token_file`` or ``<data_dir>/token``).
* Request bodies are capped at ``server.max_body_bytes`` (413).

Idle MCP sessions expire after ``server.session_idle_timeout`` and at most
``server.max_sessions`` are open at once (503 beyond), both enforced by the SDK's
session manager.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


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
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.any_host = "*" in allowed_hosts
        self.hosts = {_host_only(h) for h in allowed_hosts if h != "*"}
        self.any_origin = "*" in allowed_origins
        self.origins = {o.rstrip("/").lower() for o in allowed_origins if o != "*"}
        self.max_body = max_body
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

    def _token_ok(self, header: str | None) -> bool:
        if self.token is None:
            return True
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
        if (scope["path"] not in self.public and not self._token_ok(headers.get("authorization"))
                and not self._cookie_ok(scope, headers)):
            resp = _error(401, "Unauthorized: send 'Authorization: Bearer <token>' (the token is in the "
                               "file `loom serve` printed at start)")
            resp.headers["WWW-Authenticate"] = "Bearer"
            await resp(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _error(413, f"Request body larger than {self.max_body} bytes")(scope, receive, send)
            return
        await self.app(scope, self._capped(receive, scope, send, _error), send)

    def _capped(self, receive: Receive, scope: Scope, send: Send, _error: Any) -> Receive:
        """Count streamed (chunked) bodies too; past the cap the app sees a disconnect."""
        seen = 0
        limit = self.max_body

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    await _error(413, f"Request body larger than {limit} bytes")(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        return wrapped


def _plain_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _openai_error(status: int, message: str) -> JSONResponse:
    """The OpenAI error shape for ``/v1/`` paths, so SDK clients show the message."""
    kind = {401: "authentication_error", 413: "invalid_request_error"}.get(status, "invalid_request_error")
    code = {401: "invalid_api_key", 413: "request_too_large", 421: "host_not_allowed", 403: "origin_not_allowed"}
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code.get(status)}},
                        status_code=status)


_error = _plain_error


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
) -> Starlette:
    """The daemon's ASGI app for ``app`` (a ``Loom``); starting it starts ``app`` too.

    ``auth=False`` (``--no-auth``) is refused unless ``host`` is a loopback address.
    ``public_paths`` need no token (health probes); ``cookie_paths`` also accept the
    dashboard's cookie on GET, ``cookie_actions`` (path prefixes) on POST with the
    ``X-Loom-Dashboard: 1`` header; ``services`` are entered, in order, once the app runs.
    """
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

    from .mcp import McpSurface

    cfg = app.config.server
    host = host or cfg.host
    auth = cfg.auth if auth is None else auth
    if not auth and not is_loopback(host):
        raise ValueError(f"refusing to serve without authentication on {host}: --no-auth is only allowed "
                         "on a loopback address (127.0.0.1, ::1, localhost)")
    token = ensure_token(app.config)[0] if auth else None
    surface = surface or McpSurface(app)
    manager = StreamableHTTPSessionManager(
        app=surface.server,
        # Host/Origin are checked by SecurityGuard for every route.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        session_idle_timeout=cfg.session_idle_timeout,
        max_sessions=cfg.max_sessions,
        max_request_body_size=cfg.max_body_bytes,
    )
    allowed_hosts = list(cfg.allowed_hosts)
    if host not in ("0.0.0.0", "::", ""):
        allowed_hosts.append(host)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with app, surface.running(), manager.run(), contextlib.AsyncExitStack() as stack:
            for service in services:
                await stack.enter_async_context(service())
            yield

    mcp_endpoint = StreamableHTTPASGIApp(manager)
    routes: list[BaseRoute] = [Route(cfg.mcp_path, endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]),
                               *extra_routes]
    star = Starlette(routes=routes, lifespan=lifespan)
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
