"""What the dashboard does besides watching: every request from every surface, and the
operator's actions (load, unload, pin a model; cancel a request; a streaming chat).

* ``RequestLog`` keeps the recent requests: tool calls from the bus (MCP, the CLI through
  the daemon, plans, the dashboard's chat), grouped by request (a plan's steps share its
  correlation id), and HTTP API calls that are not tool calls (``/v1/...``, ``/api/...``)
  seen by ``RequestTracker``, an ASGI middleware that can also cancel them.
* ``DashboardApi`` serves ``/api/dashboard/*``. Its POST routes accept the dashboard's
  cookie only with the ``X-Loom-Dashboard: 1`` header, which a page on another origin
  cannot send (a custom header needs a CORS preflight the daemon never grants), on top of
  the cookie's ``SameSite=Strict`` and the Origin check every request passes.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.events import Event, new_id

MAX_REQUESTS = 100
ACTION_HEADER = "x-loom-dashboard"
# Paths that are the dashboard watching itself, not work anyone asked for.
_UNTRACKED = ("/mcp", "/events", "/api/status", "/api/dashboard", "/metrics", "/healthz", "/readyz", "/login")
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"([^"]{1,200})"')


class RequestLog:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.open_calls: dict[str, int] = {}
        self.http_scopes: dict[str, anyio.CancelScope] = {}

    def _add(self, rid: str, **fields: Any) -> dict[str, Any]:
        entry = self.entries[rid] = {"id": rid, "started": time.time(), "state": "running", "seconds": None,
                                     "steps": 0, "error": None, **fields}
        while len(self.entries) > MAX_REQUESTS:
            self.entries.popitem(last=False)
        return entry

    def on_event(self, event: Event) -> None:
        kind = type(event).__name__
        cid = event.correlation_id
        if cid is None or kind not in ("ToolCalled", "ToolFinished"):
            return
        if kind == "ToolCalled":
            entry = self.entries.get(cid)
            if entry is None:
                entry = self._add(cid, surface=event.surface, what=event.tool, kind="tool")
            entry["steps"] += 1
            entry["current"] = event.tool
            self.open_calls[cid] = self.open_calls.get(cid, 0) + 1
            return
        left = self.open_calls.get(cid, 1) - 1
        self.open_calls[cid] = left
        entry = self.entries.get(cid)
        if left <= 0:
            self.open_calls.pop(cid, None)
            if entry is not None and entry["kind"] == "tool":
                entry["state"] = "ok" if event.ok else ("cancelled" if event.error and "cancel" in event.error
                                                        else "error")
                entry["error"] = event.error
                entry["seconds"] = round(event.seconds, 3)
                entry.pop("current", None)

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for e in reversed(self.entries.values()):
            row = dict(e)
            if row["state"] == "running":
                row["seconds"] = round(now - row["started"], 1)
            out.append(row)
        return out

    def cancel(self, rid: str) -> bool:
        scope = self.http_scopes.get(rid)
        if scope is not None:
            scope.cancel()
            return True
        return self.app.tools.cancel(rid) > 0


class RequestTracker:
    """ASGI middleware: HTTP API requests into the ``RequestLog``, each in a cancel scope."""

    def __init__(self, app: ASGIApp, *, log: RequestLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/" or path.startswith(_UNTRACKED):
            await self.app(scope, receive, send)
            return
        rid = new_id()
        entry = self.log._add(rid, surface="http", what=f"{scope['method']} {path}", kind="http")
        started = time.perf_counter()
        status = 500
        response_started = False

        async def peek() -> Message:
            msg = await receive()
            if msg.get("type") == "http.request" and "model" not in entry:
                m = _MODEL_FIELD.search(msg.get("body", b"")[:4096])
                if m:
                    entry["model"] = m.group(1).decode(errors="replace")
                    entry["what"] = f"{scope['method']} {path} ({entry['model']})"
            return msg

        async def sending(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        with anyio.CancelScope() as cancel_scope:
            self.log.http_scopes[rid] = cancel_scope
            try:
                await self.app(scope, peek, sending)
            finally:
                self.log.http_scopes.pop(rid, None)
                entry["seconds"] = round(time.perf_counter() - started, 3)
        if cancel_scope.cancelled_caught:
            entry["state"] = "cancelled"
            if not response_started:
                await JSONResponse({"error": {"message": "cancelled from the dashboard", "type": "cancelled"}},
                                   status_code=499)(scope, receive, send)
            return
        if status in (401, 403, 421):  # refused at the door: not work anyone got to ask for
            self.log.entries.pop(rid, None)
            return
        entry["state"] = "ok" if status < 400 else "error"
        entry["status"] = status


class DashboardApi:
    def __init__(self, app: Any, log: RequestLog) -> None:
        self.app = app
        self.log = log

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/dashboard/requests", self.requests, methods=["GET"]),
            Route("/api/dashboard/requests/{rid}/cancel", self.cancel, methods=["POST"]),
            Route("/api/dashboard/models/{name}/{action}", self.model_action, methods=["POST"]),
            Route("/api/dashboard/chat", self.chat, methods=["POST"]),
        ]

    async def requests(self, request: Request) -> Response:
        return JSONResponse(self.log.snapshot(), headers={"Cache-Control": "no-store"})

    async def cancel(self, request: Request) -> Response:
        rid = request.path_params["rid"]
        if not self.log.cancel(rid):
            return JSONResponse({"error": f"request {rid} is not running"}, status_code=404)
        return JSONResponse({"cancelled": rid})

    async def model_action(self, request: Request) -> Response:
        from core.tools import ToolError

        name, action = request.path_params["name"], request.path_params["action"]
        pool = self.app.pool
        try:
            if action == "load":
                result = await pool.load(name, reason="loaded from the dashboard")
            elif action == "unload":
                result = await pool.unload(name)
            elif action in ("pin", "unpin"):
                result = await pool.set_pinned(name, action == "pin")
            else:
                return JSONResponse({"error": f"unknown action {action!r}: load, unload, pin or unpin"},
                                    status_code=404)
        except ToolError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(msgspec.to_builtins(result))

    async def chat(self, request: Request) -> Response:
        """The assistant's answer as server-sent events: ``answer`` (the answer so far),
        ``status`` (plan steps), ``done`` (``{"answer", "files"}``), ``error``."""
        from core.tools import ToolContext, ToolError

        try:
            body = msgspec.json.decode(await request.body())
            text, session = str(body["text"]), str(body.get("session") or "dashboard")
        except (msgspec.DecodeError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"text": "...", "session": "..."}'}, status_code=400)
        if "assistant.ask" not in self.app.tools:
            return JSONResponse({"error": "the assistant plugin is not enabled"}, status_code=409)
        send, receive = anyio.create_memory_object_stream[tuple[str, Any]](256)

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            # The assistant's contract (docs/agents.md): "answer: <the answer so far>", step
            # and audio lines; anything else is shown as a status line.
            if message and message.startswith("answer: "):
                await send.send(("answer", message[len("answer: "):]))
            elif message:
                await send.send(("status", message))

        async def run() -> None:
            ctx = ToolContext(surface="dashboard", caller="dashboard", on_progress=on_progress)
            try:
                result = await self.app.call("assistant.ask", {"text": text, "session_id": session}, ctx=ctx)
                s = result.structured or {}
                await send.send(("done", {"answer": s.get("answer") or result.text(), "files": s.get("files", []),
                                          "id": ctx.correlation_id}))
            except ToolError as exc:
                await send.send(("error", str(exc)))
            finally:
                send.close()

        async def body_stream() -> Any:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                with receive:
                    async for kind, data in receive:
                        yield f"event: {kind}\ndata: {msgspec.json.encode(data).decode()}\n\n".encode()

        return StreamingResponse(body_stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
