"""MCP tasks: start a long tool call, poll its progress, fetch the result later, or cancel it.

Both generations of the protocol are served over the same store:

* **2025-11-25** (core spec, requestor-driven): a ``tools/call`` with ``params.task``
  (``{"ttl": ms}``) answers at once with ``{"task": {...}}``; then ``tasks/get``,
  ``tasks/result`` (waits for the end, returns the ``CallToolResult``),
  ``tasks/cancel`` and ``tasks/list``. Every tool advertises
  ``execution.taskSupport = "optional"``: any call can run as a task.
* **2026-07-28** (the ``io.modelcontextprotocol/tasks`` extension, server-directed): when
  a call's per-request capabilities declare the extension and the tool matches
  ``[server] mcp_task_tools`` (video and image generation, research by default), the
  answer is ``{"resultType": "task", "taskId": ...}``; then ``tasks/get`` (the result
  or error inline once terminal), ``tasks/update`` and ``tasks/cancel``.

A task runs in the surface's task group, not the request's, so it outlives the HTTP
stream (or session) that started it. Its progress (``ctx.progress``) becomes the task's
``statusMessage``. Tasks are kept ``ttl`` ms after creation (default one hour) and in
memory only: a daemon restart forgets them. Anyone holding the bearer token may poll a
task id; ids are random (128 bits).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

from core.logging import get_logger

log = get_logger("loom.mcp")

#: ``app.services[TASKS_SERVICE]``: the daemon's one ``TaskStore`` (every MCP path shares it)
TASKS_SERVICE = "mcp.tasks"
EXTENSION = "io.modelcontextprotocol/tasks"
RELATED_TASK = "io.modelcontextprotocol/related-task"
DEFAULT_TTL_MS = 3_600_000
MAX_TTL_MS = 24 * 3_600_000
POLL_MS = 1000
MAX_TASKS = 1000  # oldest finished ones are dropped first beyond this
MAX_RUNNING = 64  # more running tasks at once is refused (each may hold a model and a thread)
TERMINAL = frozenset({"completed", "failed", "cancelled"})


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class McpTask:
    task_id: str
    tool: str
    ttl_ms: int
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    status: str = "working"
    status_message: str | None = None
    result: dict[str, Any] | None = None  # the CallToolResult, once completed
    error: dict[str, Any] | None = None  # the JSON-RPC error, once failed
    scope: anyio.CancelScope | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def set(self, status: str, message: str | None = None) -> None:
        if self.status in TERMINAL:
            return  # terminal states never change
        self.status = status
        if message is not None:
            self.status_message = message
        self.updated = time.time()
        if status in TERMINAL:
            self.done.set()

    def expired(self, now: float) -> bool:
        return now > self.created + self.ttl_ms / 1000

    # -- wire shapes ---------------------------------------------------------------------

    def legacy(self) -> dict[str, Any]:
        """The 2025-11-25 ``Task``."""
        out: dict[str, Any] = {"taskId": self.task_id, "status": self.status, "createdAt": _iso(self.created),
                               "lastUpdatedAt": _iso(self.updated), "ttl": self.ttl_ms, "pollInterval": POLL_MS}
        if self.status_message is not None:
            out["statusMessage"] = self.status_message
        return out

    def modern(self, *, detailed: bool = True) -> dict[str, Any]:
        """The extension's ``Task`` (``DetailedTask`` with the result or error once terminal)."""
        out: dict[str, Any] = {"taskId": self.task_id, "status": self.status, "createdAt": _iso(self.created),
                               "lastUpdatedAt": _iso(self.updated), "ttlMs": self.ttl_ms, "pollIntervalMs": POLL_MS}
        if self.status_message is not None:
            out["statusMessage"] = self.status_message
        if detailed and self.status == "completed" and self.result is not None:
            out["result"] = self.result
        if detailed and self.status == "failed" and self.error is not None:
            out["error"] = self.error
        return out


Runner = Callable[[McpTask], Awaitable[dict[str, Any]]]


class TaskStore:
    """Every MCP task of the daemon, by id; runs them in the task group given to ``running``."""

    def __init__(self) -> None:
        self.tasks: dict[str, McpTask] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def attach(self, tg: anyio.abc.TaskGroup) -> None:
        if self._tg is None:
            self._tg = tg

    def detach(self, tg: anyio.abc.TaskGroup) -> None:
        if self._tg is tg:
            self._tg = None

    def running(self) -> int:
        """Tasks not finished yet (a drain waits for them)."""
        return sum(t.status not in TERMINAL for t in self.tasks.values())

    def _prune(self) -> None:
        now = time.time()
        for tid in [t for t, task in self.tasks.items() if task.expired(now)]:
            task = self.tasks.pop(tid)
            if task.scope is not None:
                task.scope.cancel()
        finished = [t for t in self.tasks.values() if t.status in TERMINAL]
        while len(self.tasks) > MAX_TASKS and finished:
            self.tasks.pop(finished.pop(0).task_id, None)

    def start(self, tool: str, ttl_ms: int | None, run: Runner) -> McpTask:
        """Create a task and start ``run(task)`` (the tool call) in the background."""
        if self._tg is None:
            raise MCPError(code=types.INTERNAL_ERROR, message="tasks are not available: the MCP surface is not running")
        self._prune()
        running = self.running()
        if running >= MAX_RUNNING:
            raise MCPError(code=types.INVALID_REQUEST,
                           message=f"{running} tasks are already running (at most {MAX_RUNNING}): wait for some "
                                   "to finish or cancel them with tasks/cancel")
        ttl = DEFAULT_TTL_MS if ttl_ms is None else max(1000, min(int(ttl_ms), MAX_TTL_MS))
        task = McpTask(task_id=uuid.uuid4().hex, tool=tool, ttl_ms=ttl)
        self.tasks[task.task_id] = task

        async def execute() -> None:
            with anyio.CancelScope() as scope:
                task.scope = scope
                try:
                    result = await run(task)
                except MCPError as exc:
                    task.error = {"code": exc.error.code, "message": exc.error.message}
                    task.set("failed", exc.error.message)
                    return
                except Exception as exc:  # the runner turns tool errors into results; this is a bug
                    log.exception("task crashed", tool=tool, task=task.task_id)
                    task.error = {"code": types.INTERNAL_ERROR, "message": f"{type(exc).__name__}: {exc}"}
                    task.set("failed", task.error["message"])
                    return
                task.result = result
                task.set("completed", "finished with an error result" if result.get("isError") else "finished")
            if scope.cancelled_caught:
                task.set("cancelled", task.status_message or "cancelled")

        self._tg.start_soon(execute, name=f"mcp-task-{tool}")
        return task

    def get(self, task_id: str) -> McpTask:
        self._prune()
        task = self.tasks.get(task_id)
        if task is None:
            raise MCPError(code=types.INVALID_PARAMS,
                           message=f"Unknown task {task_id!r} (finished tasks are kept for their ttl only)")
        return task

    def cancel(self, task_id: str) -> McpTask:
        task = self.get(task_id)
        if task.status not in TERMINAL:
            task.set("cancelled", "cancelled by the client")
            if task.scope is not None:
                task.scope.cancel()
        return task


def wants_task_legacy(params: Any) -> dict[str, Any] | None:
    """The ``task`` metadata of a 2025-11-25 ``tools/call`` (raw params), or None."""
    if isinstance(params, dict):
        task = params.get("task")
        return task if isinstance(task, dict) else None
    return None


def declares_extension(params: Any) -> bool:
    """Whether a 2026-07-28 request's per-request capabilities declare the tasks extension."""
    if not isinstance(params, dict):
        return False
    meta = params.get("_meta") or {}
    caps = meta.get("io.modelcontextprotocol/clientCapabilities") or {}
    return EXTENSION in (caps.get("extensions") or {})
