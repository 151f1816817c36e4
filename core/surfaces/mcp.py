"""The MCP surface: the kernel's registries served live as an MCP server.

``McpSurface(app).server`` is a low-level ``mcp.server.Server`` whose handlers read
``app.tools``, ``app.resources`` and ``app.prompts`` on every request, so whatever a
plugin registers (or stops registering) is what clients see, with no extra code.
Every ``tools/call`` goes through ``app.call`` so validation, policy and events apply
exactly as for any other surface.

Both protocol eras the SDK speaks are served: the 2025-11-25 handshake era (list
changes are pushed on each connection's standalone stream; elicitation is a
server-to-client request) and the 2026-07-28 stateless era (list changes ride
``subscriptions/listen`` streams; elicitation is an ``InputRequiredResult`` round
trip, the tool re-run with the answers).

Beyond tools, resources and prompts: ``outputSchema`` for tools with structured results
(``core.tools``), resource templates and argument completion (``core.completion``),
resource subscriptions on both eras (``mcp_watch``), MCP tasks for long calls
(``mcp_tasks``), and tool profiles (``McpSurface(app, profile=...)``, ``core.profiles``).

Run it inside ``async with surface.running():`` (it watches the registries and runs the
tasks), then on any transport: ``serve_stdio`` here, or streamable HTTP from
``core.surfaces.http``.

Shutting down: once ``surface.draining`` is set (``loom serve`` shares its ``DaemonOps.draining``;
``loom mcp`` sets it on SIGTERM/SIGINT), a new ``tools/call`` (plain or as a task) is refused with
the JSON-RPC error ``SHUTTING_DOWN`` while the calls already running finish and deliver their results.
"""

from __future__ import annotations

import base64
import contextvars
import inspect
import json
import re
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from fnmatch import fnmatchcase
from typing import Any, BinaryIO
from urllib.parse import unquote

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import mcp_types as types
import msgspec
from mcp.server import CacheHint, NotificationOptions, Server
from mcp.server.caching import CACHEABLE_METHODS
from mcp.server.context import ServerRequestContext
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from core.completion import MAX_VALUES, complete
from core.events import Event, PluginStateChanged
from core.logging import get_logger
from core.profiles import SEARCH_TOOL, get_profile, profile_allows, profile_tools
from core.results import Audio, Image, ResourceLink, Text, ToolResult
from core.tools import ToolContext, ToolError, ToolNotFound

from .mcp_tasks import (
    EXTENSION,
    RELATED_TASK,
    TASKS_SERVICE,
    TERMINAL,
    McpTask,
    TaskStore,
    declares_extension,
    wants_task_legacy,
)
from .mcp_watch import ResourceWatcher

log = get_logger("loom.mcp")

# ``app.services[ALIASES_SERVICE]``: {mcp name: registry name}. A plugin publishes it
# when clients must see a tool under a name other than ``<plugin>.<name>`` (the MCP
# conformance fixtures use bare names such as ``test_simple_text``).
ALIASES_SERVICE = "mcp.aliases"

INSTRUCTIONS = (
    "Loom is a local multimodal agent runtime. Tools are named <plugin>.<tool>; read "
    "loom://status for the plugins and loom://models for the models and memory."
)
SEARCH_HINT = " To find the tools for a task, call tools.search with the task in a sentence."

#: JSON-RPC error code of a tool call refused because the server is shutting down (the
#: implementation-defined server-error range -32000..-32099)
SHUTTING_DOWN = -32000
SHUTTING_DOWN_MESSAGE = ("Loom is shutting down: this tool call was not started. Retry it once the daemon "
                         "has restarted (calls already running finish normally).")

_ELICIT_KEY = "loom-elicit-{}"
_STATE_TAG = "loom-elicit"


class McpResponse(Exception):
    """Raise from a tool, prompt or policy hook to answer with this raw MCP result.

    The escape hatch for protocol-level shapes Loom's typed results do not model
    (an ``InputRequiredResult``, an embedded resource); ordinary tools never need it.
    """

    def __init__(self, result: Any) -> None:
        super().__init__("an MCP response")
        self.result = result


class McpCall:
    """The MCP request a tool, prompt or resource is serving (``ctx.extra["mcp"]``,
    or ``current_call.get()`` where there is no ``ToolContext``)."""

    def __init__(self, rctx: ServerRequestContext[Any, Any], params: Any) -> None:
        self.rctx = rctx
        self.params = params

    @property
    def session(self) -> Any:
        return self.rctx.session

    @property
    def protocol_version(self) -> str:
        return self.rctx.protocol_version

    @property
    def modern(self) -> bool:
        return self.rctx.protocol_version in MODERN_PROTOCOL_VERSIONS

    @property
    def request_id(self) -> Any:
        return self.rctx.request_id

    @property
    def client_capabilities(self) -> types.ClientCapabilities | None:
        return self.rctx.session.client_capabilities

    @property
    def input_responses(self) -> dict[str, Any] | None:
        return getattr(self.params, "input_responses", None)

    @property
    def request_state(self) -> str | None:
        return getattr(self.params, "request_state", None)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """A ``notifications/message`` on this request's stream (when the client opted in)."""
        await self.rctx.session.send_log_message(level, data, logger, related_request_id=self.rctx.request_id)

    def can_elicit(self) -> bool:
        caps = self.client_capabilities
        return caps is not None and caps.elicitation is not None


current_call: contextvars.ContextVar[McpCall | None] = contextvars.ContextVar("loom_mcp_call", default=None)


# --- result conversion ----------------------------------------------------------------


def content_to_mcp(item: Any) -> dict[str, Any]:
    """One Loom content item (or an already-MCP dict) as an MCP content block."""
    if isinstance(item, Text):
        return {"type": "text", "text": item.text}
    if isinstance(item, Image):
        return {"type": "image", "data": item.b64(), "mimeType": item.mime_type}
    if isinstance(item, Audio):
        return {"type": "audio", "data": item.b64(), "mimeType": item.mime_type}
    if isinstance(item, ResourceLink):
        out: dict[str, Any] = {"type": "resource_link", "uri": item.uri, "name": item.name}
        if item.mime_type:
            out["mimeType"] = item.mime_type
        if item.description:
            out["description"] = item.description
        if item.size is not None:
            out["size"] = item.size
        return out
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, dict):
        return item
    raise TypeError(f"cannot send {type(item).__name__} as MCP content")


def result_to_mcp(result: ToolResult) -> dict[str, Any]:
    out: dict[str, Any] = {"content": [content_to_mcp(c) for c in result.content], "isError": result.is_error}
    if result.structured is not None:
        # MCP's structuredContent must be an object: wrap anything else.
        s = result.structured
        out["structuredContent"] = s if isinstance(s, dict) else {"result": s}
    return out


def error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def _done(rctx: ServerRequestContext[Any, Any], result: dict[str, Any]) -> dict[str, Any]:
    """2026-07-28 results say they are final (``resultType``); older ones must not."""
    if rctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return {**result, "resultType": "complete"}
    return result


def _answer(rctx: ServerRequestContext[Any, Any], answer: McpResponse) -> Any:
    result = answer.result
    if isinstance(result, dict) and "resultType" not in result:
        return _done(rctx, result)
    return result


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    return value


class _ListenStream:
    """Owner of the resource subscriptions of one 2026-07-28 ``subscriptions/listen`` stream."""


# --- the surface ---------------------------------------------------------------------


class _LoomServer(Server[Any]):
    """A low-level server that always advertises list-changed notifications."""

    def create_initialization_options(self, notification_options=None, experimental_capabilities=None,
                                      extensions=None):  # type: ignore[override]
        opts = notification_options or NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return super().create_initialization_options(opts, experimental_capabilities, extensions)

    def get_capabilities(self, notification_options=None, experimental_capabilities=None, extensions=None, *,
                         protocol_version=None):  # type: ignore[override]
        opts = notification_options or NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        # Both generations of MCP tasks; each wire keeps only its own field (2025-11-25:
        # ``tasks``, task-augmented tools/call, list and cancel; 2026-07-28: the extension).
        extensions = {**(extensions or self.extensions or {}), EXTENSION: {}}
        caps = super().get_capabilities(opts, experimental_capabilities, extensions,
                                        protocol_version=protocol_version)
        caps.tasks = types.ServerTasksCapability.model_validate(
            {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}})
        return caps


class McpSurface:
    """Serves one ``Loom`` app as an MCP server; see the module docstring."""

    def __init__(self, app: Any, *, name: str = "loom", profile: str | None = None,
                 draining: anyio.Event | None = None) -> None:
        """``profile``: serve only that tool profile's tools (``core.profiles``); None serves all.
        ``draining``: the event that says the server is shutting down (a new one when None)."""
        self.app = app
        self.profile = profile
        self.draining = draining if draining is not None else anyio.Event()
        if profile is not None:
            get_profile(app.config, profile)  # an unknown profile fails here, not at first call
        self._events = InMemorySubscriptionBus()
        self._listen = ListenHandler(self._events)
        self._resource_watch = ResourceWatcher(self._read_bytes, self._send_updated,
                                               on_first=self._watch_bus, on_empty=self._unwatch_bus)
        self._bus_watch: Any = None
        self._watched_connections: set[Any] = set()
        self._connections: set[Any] = set()  # handshake-era connections (standalone streams)
        self._tools_cache: list[dict[str, Any]] | None = None
        self._alias_cache: dict[str, str] | None = None
        self._snapshot = self._snap()
        self._token: Any = None
        self._loop_thread: int | None = None
        self._wake = anyio.Event()
        self._forced: set[str] = set()
        if profile is None:
            app.services["mcp"] = self
        self.server = _LoomServer(
            name if profile is None else f"{name}-{profile}",
            version=app.version,
            title="Loom",
            instructions=INSTRUCTIONS + (SEARCH_HINT if SEARCH_TOOL in app.tools else ""),
            # Lists and reads change at run time (plugins come and go): never fresh.
            cache_hints={m: CacheHint(ttl_ms=0, scope="private") for m in CACHEABLE_METHODS},
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            on_subscriptions_listen=self._listen_with_resources,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_completion=self._complete,
        )
        # Registered directly: passing on_set_logging_level warns (deprecated in 2026-07-28),
        # but 2025-11-25 clients still send it.
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        self.server.add_notification_handler("notifications/initialized", types.NotificationParams,
                                             self._initialized)
        # MCP tasks, shared by every surface of the app (a task started on /mcp/media can be
        # polled on /mcp).
        self.tasks: TaskStore = app.services.setdefault(TASKS_SERVICE, TaskStore())
        self.server.add_request_handler("tasks/get", types.GetTaskRequestParams, self._tasks_get)
        self.server.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams, self._tasks_result)
        self.server.add_request_handler("tasks/cancel", types.CancelTaskRequestParams, self._tasks_cancel)
        self.server.add_request_handler("tasks/list", types.PaginatedRequestParams, self._tasks_list)
        self.server.add_request_handler("tasks/update", types.GetTaskRequestParams, self._tasks_update)
        # The 2026-07-28 requestState is echoed by the client: seal it so tools only see
        # state they minted.
        self.server.middleware.append(
            RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=name)
        )
        self.server.middleware.append(self._task_middleware)
        app.tools.on_change(self._on_tools_change)

    # -- lifecycle and change notifications ------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[McpSurface]:
        """Watch the registries and push list-changed notifications while inside."""
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        sub = self.app.bus.subscribe(PluginStateChanged, self._on_plugin_state, name="mcp-surface",
                                     overflow="drop_oldest")
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch)
                tg.start_soon(self._resource_watch.run)
                self.tasks.attach(tg)
                try:
                    yield self
                finally:
                    self.tasks.detach(tg)
                    self._listen.close()
                    tg.cancel_scope.cancel()
        finally:
            self.app.bus.unsubscribe(sub)
            self._unwatch_bus()
            self._token = None

    def begin_drain(self) -> None:
        """Refuse new tool calls from now on; calls already running go on to the end."""
        if not self.draining.is_set():
            log.info("draining: new tool calls are refused", profile=self.profile)
        self.draining.set()

    def _refuse_if_draining(self, name: str) -> None:
        if self.draining.is_set():
            log.info("tool call refused: shutting down", tool=name)
            raise MCPError(code=SHUTTING_DOWN, message=SHUTTING_DOWN_MESSAGE,
                           data={"reason": "shutting_down", "retryable": True})

    def _on_tools_change(self, added: list[str], removed: list[str]) -> None:
        # May run in a worker thread (a sync admin tool disabling a plugin).
        self._tools_cache = None
        self._alias_cache = None
        self.changed("tools")

    def changed(self, kind: str) -> None:
        """Announce that ``kind`` ("tools", "resources" or "prompts") changed; thread-safe."""
        self._forced.add(kind)
        self._kick()

    def _on_plugin_state(self, event: PluginStateChanged) -> None:
        self._kick()

    def _kick(self) -> None:
        token = self._token
        if token is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            try:
                anyio.from_thread.run_sync(self._wake.set, token=token)
            except RuntimeError:
                pass  # the loop is shutting down

    def _snap(self) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        return (frozenset(self.app.tools.names()), frozenset(self.app.resources), frozenset(self.app.prompts))

    async def _watch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.notify_changes()

    async def notify_changes(self) -> None:
        """Tell every client what changed since the last call (tools, resources, prompts)."""
        new = self._snap()
        old, self._snapshot = self._snapshot, new
        forced, self._forced = self._forced, set()
        kinds = [k for k, a, b in zip(("tools", "resources", "prompts"), old, new, strict=True)
                 if a != b or k in forced]
        for kind in kinds:
            log.info("list changed", kind=kind)
            event = {"tools": ToolsListChanged, "resources": ResourcesListChanged,
                     "prompts": PromptsListChanged}[kind]()
            await self._events.publish(event)  # 2026-07-28 listen streams
            for conn in list(self._connections):  # handshake-era standalone streams
                await getattr(conn, f"send_{kind[:-1]}_list_changed")()

    async def _initialized(self, rctx: ServerRequestContext[Any, Any], params: Any) -> None:
        # The SDK keeps the connection on the per-request session only; track it so
        # list changes can be pushed on its standalone stream until it closes.
        conn = getattr(rctx.session, "_connection", None)
        if conn is not None and conn not in self._connections:
            self._connections.add(conn)
            conn.exit_stack.callback(self._connections.discard, conn)

    # -- tools -----------------------------------------------------------------------------

    def _aliases(self) -> dict[str, str]:
        """MCP name -> registry name: plugin-published aliases, plus underscore names when
        ``[server] mcp_tool_names = "underscore"`` (a name that would collide stays dotted)."""
        explicit = self.app.services.get(ALIASES_SERVICE) or {}
        if self.app.config.server.mcp_tool_names != "underscore":
            return explicit
        if self._alias_cache is not None:
            return self._alias_cache
        taken = set(self.app.tools.names())
        out = dict(explicit)
        renamed = set(explicit.values())
        for name in taken:
            alias = name.replace(".", "_")
            if name not in renamed and alias not in taken and alias not in out:
                out[alias] = name
        self._alias_cache = out
        return out

    def _resolve(self, name: str) -> str:
        return self._aliases().get(name, name)

    def mcp_name(self, tool: str) -> str:
        """The name MCP clients see for registry tool ``tool`` (an alias, or the name itself)."""
        for alias, real in self._aliases().items():
            if real == tool:
                return alias
        return tool

    def tool_list(self) -> list[dict[str, Any]]:
        cached = self._tools_cache
        if cached is not None:
            return cached
        reverse = {v: k for k, v in self._aliases().items()}
        tools = []
        listed = self.app.tools.list() if self.profile is None else profile_tools(self.app, self.profile)
        for t in listed:
            entry: dict[str, Any] = {
                "name": reverse.get(t.name, t.name),
                "description": t.description,
                "inputSchema": t.input_schema,
                "annotations": t.annotations.to_mcp(),
            }
            if t.output_schema is not None:
                entry["outputSchema"] = t.output_schema
            # 2025-11-25: any call may run as an MCP task (the 2026 wire drops this field).
            entry["execution"] = {"taskSupport": "optional"}
            if t.annotations.title:
                entry["title"] = t.annotations.title
            tools.append(entry)
        self._tools_cache = tools
        return tools

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        real = self._resolve(name)
        return self.app.tools.get(real).input_schema if real in self.app.tools else None

    async def _list_tools(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        return _done(rctx, {"tools": self.tool_list()})

    def _callable(self, params_name: str) -> str:
        """The registry name for an MCP tool name; an MCP error if this surface does not serve it."""
        name = self._resolve(params_name)
        if self.profile is not None and name in self.app.tools and not profile_allows(self.app, self.profile, name):
            raise MCPError(code=types.INVALID_PARAMS,
                           message=f"Tool {name!r} is not in the {self.profile!r} profile served here; "
                                   "connect to the full MCP path (or a profile that has it) to call it")
        return name

    async def _call_tool(self, rctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams,
                         task: McpTask | None = None) -> Any:
        """One ``tools/call``; with ``task``, run as that MCP task (progress goes to its status)."""
        name = self._callable(params.name)
        if task is None:  # a task was accepted before any drain began: it runs
            self._refuse_if_draining(name)
        call = McpCall(rctx, params)
        client = rctx.session.client_params
        if task is None:
            on_progress = rctx.session.report_progress
            elicit = self._elicitor(call) if call.can_elicit() else None
        else:
            # The request that started the task has been answered: nothing can be asked or
            # reported on it any more. Progress becomes the task's status message.
            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                done = f"{progress:g}/{total:g}" if total else f"{progress:g}"
                task.set("working", f"{message} ({done})" if message else done)

            elicit = None
        ctx = ToolContext(
            surface="mcp",
            caller=client.client_info.name if client is not None else "mcp",
            on_progress=on_progress,
            elicit=elicit,
        )
        ctx.extra["mcp"] = call
        ctx.extra["profile"] = self.profile
        reset = current_call.set(call)
        try:
            result = await self.app.call(name, params.arguments or {}, ctx=ctx)
        except McpResponse as answer:
            return _answer(rctx, answer)
        except ToolNotFound as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None
        except ToolError as exc:
            return _done(rctx, error_result(str(exc)))
        except MCPError:
            raise
        except Exception as exc:
            log.exception("tool crashed", tool=name)
            return _done(rctx, error_result(f"{name} failed: {type(exc).__name__}: {str(exc)[:500]}"))
        finally:
            current_call.reset(reset)
        out = result_to_mcp(result)
        tool = self.app.tools.get(name)
        if tool.output_schema is not None and "structuredContent" not in out and not out["isError"]:
            log.warning("tool declares an output schema but returned no structured content", tool=name)
        return _done(rctx, out)

    # -- tasks (core.surfaces.mcp_tasks) ---------------------------------------------------

    async def _task_middleware(self, rctx: ServerRequestContext[Any, Any], call_next: Any) -> Any:
        """Answer a ``tools/call`` that becomes a task with the task handle, at once."""
        if rctx.method != "tools/call":
            return await call_next(rctx)
        raw = rctx.params
        modern = rctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        if modern:
            if not declares_extension(raw) or not isinstance(raw, dict):
                return await call_next(rctx)
            name = self._resolve(str(raw.get("name", "")))
            if not any(fnmatchcase(name, p) for p in self.app.config.server.mcp_task_tools):
                return await call_next(rctx)
            ttl = None
        else:
            meta = wants_task_legacy(raw)
            if meta is None or not isinstance(raw, dict):
                return await call_next(rctx)
            conn = getattr(rctx.session, "_connection", None)
            if conn is not None and not conn.initialize_accepted:
                return await call_next(rctx)  # the runner answers a call before initialize
            ttl = meta.get("ttl")
        params = types.CallToolRequestParams.model_validate(raw, by_name=False)
        name = self._callable(params.name)
        if name not in self.app.tools:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool {params.name!r}")
        self._refuse_if_draining(name)

        async def run(task: McpTask) -> dict[str, Any]:
            result = await self._call_tool(rctx, params, task)
            result = _dump(result)
            if isinstance(result, dict):
                result = {k: v for k, v in result.items() if k != "resultType"}
            return result

        task = self.tasks.start(name, ttl if isinstance(ttl, int) else None, run)
        log.info("tool call started as a task", tool=name, task=task.task_id)
        if modern:
            return {"resultType": "task", **task.modern(detailed=False)}
        return {"task": task.legacy()}

    async def _tasks_get(self, rctx: ServerRequestContext[Any, Any], params: types.GetTaskRequestParams) -> Any:
        task = self.tasks.get(params.task_id)
        if rctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return task.modern()
        return task.legacy()

    async def _tasks_result(self, rctx: ServerRequestContext[Any, Any],
                            params: types.GetTaskPayloadRequestParams) -> Any:
        """2025-11-25 ``tasks/result``: wait for the end; the tool's result, or its error."""
        task = self.tasks.get(params.task_id)
        await task.done.wait()
        if task.status == "completed" and task.result is not None:
            meta = {**(task.result.get("_meta") or {}), RELATED_TASK: {"taskId": task.task_id}}
            return {**task.result, "_meta": meta}
        if task.status == "failed" and task.error is not None:
            raise MCPError(code=task.error["code"], message=task.error["message"])
        raise MCPError(code=types.INVALID_PARAMS, message=f"task {task.task_id} was cancelled: it has no result")

    async def _tasks_cancel(self, rctx: ServerRequestContext[Any, Any],
                            params: types.CancelTaskRequestParams) -> Any:
        if rctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            self.tasks.cancel(params.task_id)
            return {}  # an acknowledgement; tasks/get shows the outcome
        task = self.tasks.get(params.task_id)
        if task.status in TERMINAL:
            raise MCPError(code=types.INVALID_PARAMS,
                           message=f"task {task.task_id} is already {task.status}: nothing to cancel")
        return self.tasks.cancel(params.task_id).legacy()

    async def _tasks_list(self, rctx: ServerRequestContext[Any, Any], params: Any) -> Any:
        return {"tasks": [t.legacy() for t in self.tasks.tasks.values()]}

    async def _tasks_update(self, rctx: ServerRequestContext[Any, Any], params: types.GetTaskRequestParams) -> Any:
        # Loom's tasks never wait for input (they run without elicitation), so there is
        # never an outstanding request to answer: acknowledge, as the extension asks.
        self.tasks.get(params.task_id)
        return {}

    def _elicitor(self, call: McpCall) -> Callable[[str, dict[str, Any]], Awaitable[dict[str, Any] | None]]:
        """``ctx.elicit`` for this call: a form elicitation; the answer, or None if declined."""
        if not call.modern:
            async def elicit(message: str, schema: dict[str, Any]) -> dict[str, Any] | None:
                res = await call.session.elicit_form(message, schema, related_request_id=call.request_id)
                return (res.content or {}) if res.action == "accept" else None

            return elicit

        # 2026-07-28: no server-to-client requests. Each elicit either finds its answer
        # (this round's inputResponses, or earlier rounds' carried in the sealed
        # requestState) or ends the call with an InputRequiredResult; the client then
        # re-sends the call and the tool runs again, its earlier elicits now answered.
        # Keys are random and listed in the sealed state (which the SDK binds to this tool
        # and these arguments): an answer is taken only for a question this server asked,
        # so a client cannot pre-answer a consent request it was never sent.
        answers: dict[str, Any] = {}
        issued: list[str] = []
        state = call.request_state
        if state:
            try:
                decoded = json.loads(state)
            except ValueError:
                decoded = None
            carried = decoded.get(_STATE_TAG) if isinstance(decoded, dict) else None
            if isinstance(carried, dict) and isinstance(carried.get("keys"), list):
                issued = [k for k in carried["keys"] if isinstance(k, str)]
                if isinstance(carried.get("answers"), dict):
                    answers.update({k: v for k, v in carried["answers"].items() if k in issued})
        for key, value in (call.input_responses or {}).items():
            if key in issued and key not in answers:
                answers[key] = _dump(value)
        counter = iter(range(1_000_000))

        async def elicit_modern(message: str, schema: dict[str, Any]) -> dict[str, Any] | None:
            n = next(counter)
            if n < len(issued):
                key = issued[n]
                if key in answers:
                    got = answers[key] if isinstance(answers[key], dict) else {}
                    return (got.get("content") or {}) if got.get("action") == "accept" else None
            else:
                key = _ELICIT_KEY.format(secrets.token_urlsafe(16))
                issued.append(key)
            request = types.ElicitRequest(
                params=types.ElicitRequestFormParams(message=message, requested_schema=schema)
            )
            raise McpResponse(
                types.InputRequiredResult(
                    input_requests={key: request},
                    request_state=json.dumps({_STATE_TAG: {"keys": issued, "answers": answers}}),
                )
            )

        return elicit_modern

    # -- resources -------------------------------------------------------------------------

    @staticmethod
    def _is_template(uri: str) -> bool:
        return "{" in uri

    async def _list_resources(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        out = []
        for r in self.app.resources.values():
            if not self._is_template(r.uri):
                out.append({"uri": r.uri, "name": r.name, "description": r.description, "mimeType": r.mime_type})
        return _done(rctx, {"resources": out})

    async def _list_templates(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        out = []
        for r in self.app.resources.values():
            if self._is_template(r.uri):
                out.append({"uriTemplate": r.uri, "name": r.name, "description": r.description,
                            "mimeType": r.mime_type})
        return _done(rctx, {"resourceTemplates": out})

    def _match(self, uri: str) -> tuple[Any, dict[str, str]] | None:
        res = self.app.resources.get(uri)
        if res is not None and not self._is_template(uri):
            return res, {}
        for r in self.app.resources.values():
            if self._is_template(r.uri):
                m = _template_regex(r.uri).fullmatch(uri)
                if m:
                    return r, {k: unquote(v) for k, v in m.groupdict().items()}
        return None

    async def _read_resource(self, rctx: ServerRequestContext[Any, Any], params: Any) -> Any:
        uri = str(params.uri)
        found = self._match(uri)
        if found is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Resource not found: {uri}", data={"uri": uri})
        res, variables = found
        value, early = await self._run_handler(rctx, params, lambda: res.func(self.app, **variables),
                                               f"Reading {uri}")
        if early is not None:
            return early
        entry: dict[str, Any] = {"uri": uri, "mimeType": res.mime_type}
        if isinstance(value, bytes | bytearray):
            entry["blob"] = base64.b64encode(value).decode()
        elif isinstance(value, str):
            entry["text"] = value
        else:
            entry["text"] = msgspec.json.encode(value, enc_hook=str).decode()
        return _done(rctx, {"contents": [entry]})

    async def _run_handler(self, rctx: ServerRequestContext[Any, Any], params: Any, invoke: Callable[[], Any],
                           what: str) -> tuple[Any, Any]:
        """Run a resource or prompt function with the call context set.

        Returns ``(value, None)``, or ``(None, result)`` when the function answered with a
        raw MCP result (``McpResponse``). Any other error becomes an internal error.
        """
        reset = current_call.set(McpCall(rctx, params))
        try:
            value = invoke()
            if inspect.isawaitable(value):
                value = await value
            return value, None
        except McpResponse as answer:
            return None, _answer(rctx, answer)
        except MCPError:
            raise
        except ToolError as exc:  # the handler's own "not found" or bad argument: say why
            raise MCPError(code=types.INVALID_PARAMS, message=f"{what}: {exc}") from None
        except Exception as exc:
            log.exception("handler failed", what=what)
            raise MCPError(code=types.INTERNAL_ERROR, message=f"{what} failed: {exc}") from None
        finally:
            current_call.reset(reset)

    # -- resource subscriptions (core.surfaces.mcp_watch) ----------------------------------

    def _watch_bus(self) -> None:
        """While anything is subscribed, any event may change a subscribed resource: each
        burst of events triggers one re-read (``ResourceWatcher.run``)."""
        if self._bus_watch is None:
            self._bus_watch = self.app.bus.subscribe(Event, lambda _e: self._resource_watch.kick(),
                                                     name="mcp-resource-watch", overflow="drop_oldest")

    def _unwatch_bus(self) -> None:
        if self._bus_watch is not None:
            self.app.bus.unsubscribe(self._bus_watch)
            self._bus_watch = None

    async def _read_bytes(self, uri: str) -> bytes:
        """A resource's contents as bytes, for change detection."""
        found = self._match(uri)
        if found is None:
            raise LookupError(f"Resource not found: {uri}")
        res, variables = found
        value = res.func(self.app, **variables)
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, str):
            return value.encode()
        return msgspec.json.encode(value, enc_hook=str)

    async def _send_updated(self, uri: str, owners: set[Any]) -> None:
        log.debug("resource updated", uri=uri)
        if any(isinstance(o, _ListenStream) for o in owners):
            await self._events.publish(ResourceUpdated(uri=uri))  # 2026-07-28 listen streams filter by URI
        for conn in owners:
            if not isinstance(conn, _ListenStream):
                try:
                    await conn.send_resource_updated(uri)  # 2025-11-25: on the session's standalone stream
                except Exception as exc:  # a closing connection must not keep the others from hearing
                    log.debug("resource update not delivered", uri=uri, error=repr(exc))

    def _known(self, uri: str) -> None:
        if self._match(uri) is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Resource not found: {uri}", data={"uri": uri})

    async def _subscribe(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        """2025-11-25 ``resources/subscribe``: ``notifications/resources/updated`` follows each real change."""
        uri = str(params.uri)
        self._known(uri)
        conn = getattr(rctx.session, "_connection", None)
        if conn is None:
            raise MCPError(code=types.INTERNAL_ERROR, message="this transport cannot carry resource updates")
        if conn not in self._watched_connections:
            self._watched_connections.add(conn)
            conn.exit_stack.callback(self._forget_connection, conn)
        await self._resource_watch.add(uri, conn)
        return {}

    def _forget_connection(self, conn: Any) -> None:
        self._watched_connections.discard(conn)
        self._resource_watch.remove_owner(conn)

    async def _unsubscribe(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        conn = getattr(rctx.session, "_connection", None)
        self._resource_watch.remove(str(params.uri), conn)
        return {}

    async def _listen_with_resources(self, rctx: ServerRequestContext[Any, Any],
                                     params: types.SubscriptionsListenRequestParams) -> Any:
        """2026-07-28 ``subscriptions/listen``: list changes, plus updates of the listed resources."""
        uris = list(params.notifications.resource_subscriptions or ())
        for uri in uris:
            self._known(uri)
        stream = _ListenStream()
        for uri in uris:
            await self._resource_watch.add(uri, stream)
        try:
            return await self._listen(rctx, params)
        finally:
            for uri in uris:
                self._resource_watch.remove(uri, stream)

    # -- prompts ---------------------------------------------------------------------------

    async def _list_prompts(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        out = []
        for p in self.app.prompts.values():
            entry: dict[str, Any] = {"name": p.name, "description": p.description}
            args = p.arguments()
            if args:
                entry["arguments"] = args
            out.append(entry)
        return _done(rctx, {"prompts": out})

    async def _get_prompt(self, rctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> Any:
        prompt = self.app.prompts.get(params.name)
        if prompt is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt {params.name!r}")
        given = dict(params.arguments or {})
        known = {a["name"] for a in prompt.arguments()}
        missing = [a["name"] for a in prompt.arguments() if a["required"] and a["name"] not in given]
        if missing:
            raise MCPError(code=types.INVALID_PARAMS,
                           message=f"Prompt {params.name!r} needs argument(s): {', '.join(missing)}")
        value, early = await self._run_handler(
            rctx, params, lambda: prompt.func(**{k: v for k, v in given.items() if k in known}),
            f"Prompt {params.name!r}")
        if early is not None:
            return early
        return _done(rctx, {"description": prompt.description, "messages": _prompt_messages(value)})

    async def _complete(self, rctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
                        ) -> dict[str, Any]:
        """Values for a prompt argument or template variable (``core.completion``, by its name)."""
        ref = params.ref
        if isinstance(ref, types.PromptReference):
            if ref.name not in self.app.prompts:
                raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt {ref.name!r}")
            where = ref.name
        else:
            if ref.uri not in self.app.resources:
                raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown resource template {ref.uri!r}")
            where = ref.uri
        # Synchronous: listing one folder is fast, and the pool is not thread-safe.
        values = complete(self.app, params.argument.name, params.argument.value, ref=where)
        shown = values[:MAX_VALUES]
        return _done(rctx, {"completion": {"values": shown, "total": len(values),
                                           "hasMore": len(values) > len(shown)}})

    async def _set_level(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        return {}


def _prompt_messages(value: Any) -> list[dict[str, Any]]:
    """A prompt function's answer (text, or (role, content) pairs) as MCP messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": {"type": "text", "text": value}}]
    out = []
    for item in value:
        if isinstance(item, dict) and "role" in item:
            out.append(item)
            continue
        role, content = item if isinstance(item, tuple | list) else ("user", item)
        out.append({"role": role, "content": content_to_mcp(content)})
    return out


_templates: dict[str, re.Pattern[str]] = {}


def _template_regex(template: str) -> re.Pattern[str]:
    """``test://item/{id}/data`` → a regex with one named group per variable; a ``{+path}``
    variable (RFC 6570 reserved expansion) may span several segments."""
    pat = _templates.get(template)
    if pat is None:
        parts = re.split(r"\{(\+?[A-Za-z_][A-Za-z0-9_]*)\}", template)
        rx = "".join(re.escape(p) if i % 2 == 0
                     else f"(?P<{p[1:]}>.+)" if p.startswith("+") else f"(?P<{p}>[^/]+)"
                     for i, p in enumerate(parts))
        pat = _templates[template] = re.compile(rx)
    return pat


# --- stdio transport -------------------------------------------------------------------


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return True


def valid_id(value: Any) -> bool:
    """A JSON-RPC id MCP accepts: a string or an integer (not null, a float, a bool)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_line(line: bytes, *, max_depth: int = 64) -> tuple[Any, dict[str, Any] | None]:
    """One stdin line → (JSON-RPC message, None) or (None, the error to answer with)."""

    def err(code: int, message: str, ident: Any = None) -> tuple[None, dict[str, Any]]:
        return None, {"code": code, "message": message, "id": ident}

    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return err(types.PARSE_ERROR, "Parse error: the line is not valid UTF-8")
    try:
        obj = json.loads(text)
    except RecursionError:
        return err(types.INVALID_REQUEST, f"Invalid Request: nested deeper than {max_depth} levels")
    except ValueError:
        return err(types.PARSE_ERROR, "Parse error: the line is not valid JSON")
    if isinstance(obj, list):
        return err(types.INVALID_REQUEST, "Invalid Request: JSON-RPC batches are not supported")
    if not isinstance(obj, dict):
        return err(types.INVALID_REQUEST, "Invalid Request: expected a JSON-RPC object")
    ident = obj.get("id")
    if "id" in obj and not valid_id(ident):
        # Not a notification: a request whose id is unusable gets an error, not silence.
        return err(types.INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
    if not _depth_ok(obj, max_depth):
        return err(types.INVALID_REQUEST, f"Invalid Request: nested deeper than {max_depth} levels", ident)
    try:
        return types.jsonrpc_message_adapter.validate_python(obj, by_name=False), None
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return err(types.INVALID_REQUEST, f"Invalid Request: {first}", ident)


async def serve_stdio(surface: McpSurface, stdin: BinaryIO, stdout: BinaryIO, *, max_line: int,
                      grace: float = 30.0) -> None:
    """Serve MCP over newline-delimited JSON-RPC on ``stdin``/``stdout`` (binary files).

    Unlike the SDK's stdio transport, a malformed line (not UTF-8, not JSON, not
    JSON-RPC, too deep, longer than ``max_line`` bytes) is answered with the matching
    JSON-RPC error instead of being dropped, and the next line is served normally.

    Returns at end of input, or once ``surface.draining`` is set and every request
    received so far has been answered (at most ``grace`` seconds later); new tool calls
    meanwhile are refused (``SHUTTING_DOWN``).
    """
    # Requests read but not yet answered: a drain ends once their answers are written.
    # A 2026-07-28 subscriptions/listen stream never ends by itself, so it is not waited for.
    unanswered: set[Any] = set()
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    errors = write_send.clone()
    dst = anyio.wrap_file(stdout)

    async def readline(limit: int) -> bytes:
        # Abandoned on cancel: a drain must not wait for a client that keeps stdin open.
        return await anyio.to_thread.run_sync(stdin.readline, limit, abandon_on_cancel=True)

    async def send_error(e: dict[str, Any]) -> None:
        msg = types.JSONRPCError(jsonrpc="2.0", id=e["id"], error=types.ErrorData(code=e["code"],
                                                                                  message=e["message"]))
        try:
            await errors.send(SessionMessage(msg))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def reader() -> None:
        async with read_send:
            while True:
                line = await readline(max_line + 1)
                if not line:
                    return
                if len(line) > max_line and not line.endswith(b"\n"):
                    while True:  # skip the rest of the oversized line
                        rest = await readline(1 << 20)
                        if not rest or rest.endswith(b"\n"):
                            break
                    await send_error({"code": types.INVALID_REQUEST, "id": None,
                                      "message": f"Invalid Request: line longer than {max_line} bytes"})
                    continue
                if not line.strip():
                    continue
                message, error = parse_line(line.strip())
                if error is not None:
                    await send_error(error)
                else:
                    if isinstance(message, types.JSONRPCRequest) and message.method != "subscriptions/listen":
                        unanswered.add(message.id)
                    await read_send.send(SessionMessage(message))

    async def writer() -> None:
        async with write_recv:
            async for item in write_recv:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                await dst.write(data.encode() + b"\n")
                await dst.flush()
                if isinstance(item.message, types.JSONRPCResponse | types.JSONRPCError):
                    unanswered.discard(item.message.id)

    async def drain(scope: anyio.CancelScope) -> None:
        await surface.draining.wait()
        with anyio.move_on_after(grace):
            while unanswered:  # noqa: ASYNC110 - a set the reader and writer update, no event
                await anyio.sleep(0.02)
        if unanswered:
            log.warning("drain: giving up on unanswered requests", count=len(unanswered), grace=grace)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        tg.start_soon(reader)
        tg.start_soon(drain, tg.cancel_scope)
        try:
            await surface.server.run(read_recv, write_send, surface.server.create_initialization_options())
        finally:
            await errors.aclose()
            tg.cancel_scope.cancel()
