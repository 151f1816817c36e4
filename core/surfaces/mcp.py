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

Run it inside ``async with surface.running():`` (it watches the registries), then
on any transport: ``serve_stdio`` here, or streamable HTTP from ``core.surfaces.http``.
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
from typing import Any, BinaryIO

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
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from core.events import PluginStateChanged
from core.logging import get_logger
from core.results import Audio, Image, ResourceLink, Text, ToolResult
from core.tools import ToolContext, ToolError, ToolNotFound

log = get_logger("loom.mcp")

# ``app.services[ALIASES_SERVICE]``: {mcp name: registry name}. A plugin publishes it
# when clients must see a tool under a name other than ``<plugin>.<name>`` (the MCP
# conformance fixtures use bare names such as ``test_simple_text``).
ALIASES_SERVICE = "mcp.aliases"

INSTRUCTIONS = (
    "Loom is a local multimodal agent runtime. Tools are named <plugin>.<tool>; read "
    "loom://status for the plugins and loom://models for the models and memory."
)

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
        return super().get_capabilities(opts, experimental_capabilities, extensions,
                                        protocol_version=protocol_version)


class McpSurface:
    """Serves one ``Loom`` app as an MCP server; see the module docstring."""

    def __init__(self, app: Any, *, name: str = "loom") -> None:
        self.app = app
        self._events = InMemorySubscriptionBus()
        self._listen = ListenHandler(self._events)
        self._connections: set[Any] = set()  # handshake-era connections (standalone streams)
        self._tools_cache: list[dict[str, Any]] | None = None
        self._alias_cache: dict[str, str] | None = None
        self._snapshot = self._snap()
        self._token: Any = None
        self._loop_thread: int | None = None
        self._wake = anyio.Event()
        self._forced: set[str] = set()
        app.services["mcp"] = self
        self.server = _LoomServer(
            name,
            version=app.version,
            title="Loom",
            instructions=INSTRUCTIONS,
            # Lists and reads change at run time (plugins come and go): never fresh.
            cache_hints={m: CacheHint(ttl_ms=0, scope="private") for m in CACHEABLE_METHODS},
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._subscribe,
            on_subscriptions_listen=self._listen,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_completion=self._complete,
        )
        # Registered directly: passing on_set_logging_level warns (deprecated in 2026-07-28),
        # but 2025-11-25 clients still send it.
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        self.server.add_notification_handler("notifications/initialized", types.NotificationParams,
                                             self._initialized)
        # The 2026-07-28 requestState is echoed by the client: seal it so tools only see
        # state they minted.
        self.server.middleware.append(
            RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=name)
        )
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
                try:
                    yield self
                finally:
                    self._listen.close()
                    tg.cancel_scope.cancel()
        finally:
            self.app.bus.unsubscribe(sub)
            self._token = None

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

    def tool_list(self) -> list[dict[str, Any]]:
        cached = self._tools_cache
        if cached is not None:
            return cached
        reverse = {v: k for k, v in self._aliases().items()}
        tools = []
        for t in self.app.tools.list():
            entry: dict[str, Any] = {
                "name": reverse.get(t.name, t.name),
                "description": t.description,
                "inputSchema": t.input_schema,
                "annotations": t.annotations.to_mcp(),
            }
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

    async def _call_tool(self, rctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        name = self._resolve(params.name)
        call = McpCall(rctx, params)
        client = rctx.session.client_params
        ctx = ToolContext(
            surface="mcp",
            caller=client.client_info.name if client is not None else "mcp",
            on_progress=rctx.session.report_progress,
            elicit=self._elicitor(call) if call.can_elicit() else None,
        )
        ctx.extra["mcp"] = call
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
        return _done(rctx, result_to_mcp(result))

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
                    return r, m.groupdict()
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
        except Exception as exc:
            log.exception("handler failed", what=what)
            raise MCPError(code=types.INTERNAL_ERROR, message=f"{what} failed: {exc}") from None
        finally:
            current_call.reset(reset)

    async def _subscribe(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        # Accepted so 2025-11-25 clients can subscribe; Loom's resources are snapshots
        # that clients re-read, so there are no per-resource updates to push yet.
        return {}

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

    async def _complete(self, rctx: ServerRequestContext[Any, Any], params: Any) -> dict[str, Any]:
        return _done(rctx, {"completion": {"values": [], "total": 0, "hasMore": False}})

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
    """``test://item/{id}/data`` → a regex with one named group per variable."""
    pat = _templates.get(template)
    if pat is None:
        parts = re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template)
        rx = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
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


async def serve_stdio(surface: McpSurface, stdin: BinaryIO, stdout: BinaryIO, *, max_line: int) -> None:
    """Serve MCP over newline-delimited JSON-RPC on ``stdin``/``stdout`` (binary files).

    Unlike the SDK's stdio transport, a malformed line (not UTF-8, not JSON, not
    JSON-RPC, too deep, longer than ``max_line`` bytes) is answered with the matching
    JSON-RPC error instead of being dropped, and the next line is served normally.
    """
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    errors = write_send.clone()
    dst = anyio.wrap_file(stdout)

    async def readline(limit: int) -> bytes:
        return await anyio.to_thread.run_sync(stdin.readline, limit)

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
                    await read_send.send(SessionMessage(message))

    async def writer() -> None:
        async with write_recv:
            async for item in write_recv:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                await dst.write(data.encode() + b"\n")
                await dst.flush()

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        tg.start_soon(reader)
        try:
            await surface.server.run(read_recv, write_send, surface.server.create_initialization_options())
        finally:
            await errors.aclose()
            tg.cancel_scope.cancel()
