"""The tool registry: one place every surface (MCP, HTTP, CLI, plans) calls tools through.

A tool is a function taking one ``msgspec.Struct`` of arguments and, optionally, a
``ToolContext``. Its name is ``<plugin>.<name>``, its description the docstring, its
JSON schema derived from the Struct, its arguments validated by msgspec. Sync tools run
in a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import threading
import time
import types
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec

from .blocking import CancelFlag
from .events import Progress, ToolCalled, ToolFinished, ToolsChanged, new_id
from .logging import bind_request
from .results import CONTENT_TYPES, ToolResult, to_result

if typing.TYPE_CHECKING:
    from .bus import EventBus

PROGRESS_SEND_TIMEOUT = 2.0  # seconds a sync tool's progress report may wait for its client
_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")


class ToolError(Exception):
    """An error meant for the caller: its message is shown as the tool's error result."""


class ToolNotFound(ToolError):
    pass


class ToolArgumentError(ToolError):
    pass


class ToolDenied(ToolError):
    pass


class ToolCancelled(ToolError):
    pass


class DuplicateToolError(ValueError):
    pass


class Annotations(msgspec.Struct, frozen=True, kw_only=True):
    """MCP tool annotations, always sent explicitly (MCP's own defaults are pessimistic)."""

    title: str | None = None
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False

    def to_mcp(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }
        if self.title:
            out["title"] = self.title
        return out


class NoArgs(msgspec.Struct, forbid_unknown_fields=True):
    """A tool that takes no arguments."""


@dataclass(eq=False)
class Tool:
    name: str
    plugin: str
    func: Callable[..., Any]
    args_type: type[msgspec.Struct]
    description: str
    annotations: Annotations
    wants_context: bool
    is_async: bool
    timeout: float | None = None
    #: requests a user might make that this tool answers; the assistant's router learns them
    examples: tuple[str, ...] = ()
    # The JSON schema of the structured content the tool returns (MCP ``outputSchema``):
    # derived from the return annotation, or given at registration; None for tools that
    # return only text or media.
    output_schema: dict[str, Any] | None = None
    _schema: dict[str, Any] | None = None

    @property
    def input_schema(self) -> dict[str, Any]:
        if self._schema is None:
            self._schema = struct_schema(self.args_type)
        return self._schema

    def validate(self, arguments: Any) -> msgspec.Struct:
        """Turn raw arguments (dict, JSON bytes or the Struct itself) into the Struct."""
        if isinstance(arguments, self.args_type):
            return arguments
        try:
            if isinstance(arguments, bytes | str):
                return msgspec.json.decode(arguments or b"{}", type=self.args_type)
            return msgspec.convert({} if arguments is None else arguments, self.args_type)
        except msgspec.ValidationError as exc:
            raise ToolArgumentError(f"Invalid arguments for {self.name}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ToolArgumentError(f"Arguments for {self.name} are not valid JSON: {exc}") from None

    def summary(self) -> str:
        props = self.input_schema.get("properties", {})
        required = set(self.input_schema.get("required", []))
        parts = [f"{k}{'' if k in required else '?'}: {_type_name(v)}" for k, v in props.items()]
        return f"{self.name}({', '.join(parts)})"


def _type_name(prop: dict[str, Any]) -> str:
    if "type" in prop:
        t = prop["type"]
        return "|".join(t) if isinstance(t, list) else t
    if "anyOf" in prop:
        return "|".join(_type_name(p) for p in prop["anyOf"])
    if "enum" in prop:
        return "|".join(repr(e) for e in prop["enum"])
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    return "any"


def struct_schema(args_type: Any) -> dict[str, Any]:
    """A plain object JSON schema for ``args_type``: the root inlined, no root ``$ref``."""
    schema = msgspec.json.schema(args_type)
    ref = schema.pop("$ref", None)
    defs: dict[str, Any] = schema.pop("$defs", {})
    if ref is None:
        root = schema
    else:
        root = dict(defs.pop(ref.rsplit("/", 1)[-1]))
    root.pop("title", None)
    root.setdefault("type", "object")
    root.setdefault("properties", {})
    if defs:
        root["$defs"] = defs
    return root


# Return annotations that never produce structured content (text, media, or a ToolResult
# whose structure only the tool knows: such a tool declares ``output_schema=`` instead).
_UNSTRUCTURED = (str, bytes, type(None), ToolResult, *CONTENT_TYPES)


def output_schema_for(annotation: Any) -> dict[str, Any] | None:
    """The MCP ``outputSchema`` for a tool's return annotation, or None.

    A Struct, TypedDict, dataclass or ``dict[...]`` is the structured content itself; a
    list, tuple, number or bool is sent wrapped as ``{"result": ...}`` (MCP's
    ``structuredContent`` must be an object), so its schema is wrapped the same way. A
    union that may also return text or media gets no schema: MCP requires structured
    content on every result once a schema is declared.
    """
    if annotation is inspect.Signature.empty or annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if any(_is_unstructured(m) for m in members):
            return None
        if all(_is_object(m) for m in members):
            return struct_schema(annotation)
        if not any(_is_object(m) for m in members):
            return _wrapped(annotation)
        return None  # objects mixed with scalars: the two wire shapes differ
    if _is_unstructured(annotation):
        return None
    if _is_object(annotation):
        return struct_schema(annotation)
    try:
        return _wrapped(annotation)
    except (TypeError, msgspec.ValidationError):
        return None  # not a type msgspec can describe: declare output_schema= explicitly


def _is_unstructured(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _is_unstructured(typing.get_args(tp)[0])
    if origin in (list, tuple):  # a list of content items is content; of anything else, structured
        return any(_is_content(a) for a in typing.get_args(tp) if a is not Ellipsis)
    if origin in (typing.Union, types.UnionType):
        return any(_is_unstructured(a) for a in typing.get_args(tp))
    base = origin or tp
    return tp is None or (isinstance(base, type) and issubclass(base, _UNSTRUCTURED))


def _is_content(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_content(a) for a in typing.get_args(tp))
    return isinstance(tp, type) and issubclass(tp, CONTENT_TYPES)


def _is_object(tp: Any) -> bool:
    base = typing.get_origin(tp) or tp
    if base is dict or (isinstance(base, type) and issubclass(base, msgspec.Struct)):
        return True
    return typing.is_typeddict(base) or dataclasses.is_dataclass(base)


def _wrapped(tp: Any) -> dict[str, Any]:
    inner = msgspec.json.schema(tp)
    defs = inner.pop("$defs", None)
    out: dict[str, Any] = {"type": "object", "properties": {"result": inner}, "required": ["result"]}
    if defs:
        out["$defs"] = defs
    return out


def object_schema(*, optional: dict[str, Any] | None = None, **required: Any) -> dict[str, Any]:
    """An ``output_schema=`` for a ``ToolResult`` whose ``structured`` is a dict: each keyword
    names a key and its type (``str``, ``int | None``, ``list[dict]``...); keys in
    ``optional`` may be absent. Other keys may appear too (the schema stays open)."""
    props = {k: msgspec.json.schema(v) for k, v in {**required, **(optional or {})}.items()}
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _explicit_output_schema(value: Any) -> dict[str, Any] | None:
    """``output_schema=`` at registration: a JSON schema dict, or a type to derive one from."""
    if value is None or isinstance(value, dict):
        return value
    schema = output_schema_for(value)
    if schema is None:
        raise TypeError(f"output_schema={value!r} does not describe structured content")
    return schema


# --- call context --------------------------------------------------------------------

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
Elicitor = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass(eq=False)
class ToolContext:
    """What a tool may use while it runs: progress, cancellation, services, the caller.

    Surfaces fill in ``on_progress`` (MCP progress notifications) and ``elicit``
    (MCP elicitation); tools never need to know which surface called them.
    """

    tool: str = ""
    correlation_id: str = field(default_factory=new_id)
    surface: str = "python"
    caller: str = "local"
    app: Any = None
    bus: EventBus | None = None
    on_progress: ProgressCallback | None = None
    elicit: Elicitor | None = None
    cancelled: threading.Event = field(default_factory=CancelFlag)
    extra: dict[str, Any] = field(default_factory=dict)
    _token: Any = None
    _scope: Any = None  # the running call's cancel scope (ToolRegistry.cancel)
    _progress_broken: bool = False

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress from an async tool (or from the loop thread)."""
        if self.bus is not None:
            await self.bus.publish(
                Progress(
                    tool=self.tool,
                    progress=progress,
                    total=total,
                    message=message,
                    correlation_id=self.correlation_id,
                    source=self.tool.split(".", 1)[0],
                )
            )
        if self.on_progress is not None and not self._progress_broken:
            # Progress never holds the tool up: a client that stopped reading (a dropped
            # stream: the send blocks, or raises WouldBlock/ClosedResourceError) would
            # otherwise stall the tool, and with it the model it holds, until shutdown.
            with anyio.move_on_after(PROGRESS_SEND_TIMEOUT) as scope:
                try:
                    await self.on_progress(progress, total, message)
                except Exception:
                    self._progress_broken = True  # the stream is gone: stop trying, keep working
            if scope.cancelled_caught:
                self._progress_broken = True

    def progress_sync(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress from a sync tool running in a worker thread.

        Raises ``ToolCancelled`` when the call was cancelled, so a loop that reports
        progress each step also stops at the next step.
        """
        self.check_cancelled()
        if self._token is not None:
            try:
                anyio.from_thread.run(self.progress, progress, total, message, token=self._token)
            except RuntimeError:
                pass  # the loop is gone (shutdown): progress is best effort
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise ToolCancelled(f"{self.tool} was cancelled")


# --- authorization -------------------------------------------------------------------


class Decision(msgspec.Struct, frozen=True):
    """What the authorization hook decided for one call."""

    action: str  # "allow", "deny" or "ask"
    reason: str = ""


ALLOW = Decision("allow")


@dataclass(frozen=True)
class ToolCall:
    tool: Tool
    args: msgspec.Struct
    ctx: ToolContext


Authorizer = Callable[[ToolCall], Awaitable[Decision]]


# --- registry ------------------------------------------------------------------------


def _examples(name: str, examples: Iterable[str]) -> tuple[str, ...]:
    out = tuple(examples)
    bad = [e for e in out if not isinstance(e, str) or not e.strip() or len(e) > 2000]
    if isinstance(examples, str) or bad:
        raise ValueError(f"tool {name!r}: examples must be a list of non-empty request strings (at most 2000 "
                         f"characters each), got {examples if isinstance(examples, str) else bad[0]!r}")
    return out


class ToolRegistry:
    """Every registered tool by name, and the one way to call them."""

    def __init__(self, bus: EventBus | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        self.bus = bus
        self.authorize: Authorizer | None = None
        self.after_call: list[Callable[[ToolCall, ToolResult | None, BaseException | None], Any]] = []
        self._listeners: list[Callable[[list[str], list[str]], None]] = []
        # Calls now running, by correlation id (a plan's steps share their request's id).
        self.running: dict[str, list[ToolContext]] = {}

    # -- registration -------------------------------------------------------------------

    def add(
        self,
        func: Callable[..., Any],
        *,
        plugin: str,
        name: str | None = None,
        description: str | None = None,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
        title: str | None = None,
        timeout: float | None = None,
        examples: Iterable[str] = (),
        output_schema: Any = None,
    ) -> Tool:
        """Register ``func`` as ``<plugin>.<name>``. Raises on a duplicate name.

        ``examples``: requests, in the words users would use, that this tool answers
        ("turn the volume down", "baja el volumen"); the assistant's router trains on
        them at start, so the tool becomes routable without editing the assistant.

        ``output_schema`` (a JSON schema, or a type such as a Struct) describes the
        structured content for tools whose return annotation cannot (``-> ToolResult``);
        otherwise it is derived from the return annotation.
        """
        short = name or func.__name__
        full = short if "." in short else f"{plugin}.{short}"
        if not _NAME.match(full):
            raise ValueError(f"invalid tool name {full!r}: use letters, digits, '_' and '-' around dots")
        if full in self._tools:
            other = self._tools[full].plugin
            raise DuplicateToolError(
                f"tool {full!r} registered by plugin {plugin!r} is already registered by plugin {other!r}"
            )
        args_type, wants_context, returns = _signature(func)
        tool = Tool(
            name=full,
            plugin=plugin,
            func=func,
            args_type=args_type,
            description=description or inspect.getdoc(func) or "",
            annotations=Annotations(
                title=title,
                read_only=read_only,
                destructive=destructive,
                idempotent=idempotent,
                open_world=open_world,
            ),
            wants_context=wants_context,
            is_async=inspect.iscoroutinefunction(func),
            timeout=timeout,
            examples=_examples(full, examples),
            output_schema=_explicit_output_schema(output_schema) if output_schema is not None
            else output_schema_for(returns),
        )
        tool.input_schema  # noqa: B018 - derive now so a bad Struct fails at registration
        self._tools[full] = tool
        self._changed([full], [])
        return tool

    def remove_plugin(self, plugin: str) -> list[str]:
        gone = [n for n, t in self._tools.items() if t.plugin == plugin]
        for n in gone:
            del self._tools[n]
        if gone:
            self._changed([], gone)
        return gone

    def on_change(self, listener: Callable[[list[str], list[str]], None]) -> None:
        self._listeners.append(listener)

    def _changed(self, added: list[str], removed: list[str]) -> None:
        for listener in self._listeners:
            listener(added, removed)
        if self.bus is not None:
            self.bus.publish_nowait(ToolsChanged(added=added, removed=removed))

    # -- lookup -------------------------------------------------------------------------

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            close = [n for n in self._tools if n.split(".")[-1] == name.split(".")[-1]]
            hint = f" Did you mean {', '.join(close)}?" if close else " Run `loom tools` to list them."
            shown = name if len(name) <= 100 else name[:100] + "…"  # never echo a huge name back
            raise ToolNotFound(f"Unknown tool {shown!r}.{hint}") from None

    def list(self) -> list[Tool]:
        return sorted(self._tools.values(), key=lambda t: t.name)

    def cancel(self, correlation_id: str) -> int:
        """Cancel every call of one request (the dashboard's cancel button); returns how many."""
        calls = self.running.get(correlation_id, [])
        for ctx in calls:
            ctx.cancelled.set()  # sync tools stop at their next check
            if ctx._scope is not None:
                ctx._scope.cancel()
        return len(calls)

    def names(self) -> Iterable[str]:
        return self._tools.keys()

    # -- calling ------------------------------------------------------------------------

    async def call(self, name: str, arguments: Any = None, ctx: ToolContext | None = None) -> ToolResult:
        """Validate, authorize, run and normalise one call. Raises ``ToolError`` subclasses."""
        tool = self.get(name)
        args = tool.validate(arguments)
        ctx = ctx or ToolContext()
        ctx.tool = tool.name
        if ctx.bus is None:
            ctx.bus = self.bus
        # Every log line while the tool runs (worker threads included: anyio copies the
        # context) carries the request's correlation id and the tool's name.
        with bind_request(ctx.correlation_id, tool=tool.name):
            return await self._call(tool, args, ctx)

    async def _call(self, tool: Tool, args: msgspec.Struct, ctx: ToolContext) -> ToolResult:
        call = ToolCall(tool, args, ctx)
        if self.authorize is not None:
            decision = await self.authorize(call)
            if decision.action != "allow":
                err = ToolDenied(decision.reason or f"{tool.name} is not allowed by the policy")
                self._after(call, None, err)
                raise err
        started = time.perf_counter()
        if self.bus is not None:
            await self.bus.publish(
                ToolCalled(tool=tool.name, surface=ctx.surface, correlation_id=ctx.correlation_id)
            )
        result: ToolResult | None = None
        error: BaseException | None = None
        running = self.running.setdefault(ctx.correlation_id, [])
        running.append(ctx)
        outer = ctx._scope  # the same context may be passed on to a nested call
        try:
            with anyio.CancelScope() as scope:
                ctx._scope = scope
                result = to_result(await self._run(tool, args, ctx))
            if scope.cancelled_caught:
                raise ToolCancelled(f"{tool.name} was cancelled")
            return result  # type: ignore[return-value]
        except BaseException as exc:
            error = exc
            raise
        finally:
            ctx._scope = outer
            running.remove(ctx)
            if not running:
                self.running.pop(ctx.correlation_id, None)
            if self.bus is not None:
                failed = error is not None
                self.bus.publish_nowait(
                    ToolFinished(
                        tool=tool.name,
                        ok=not failed and not (result and result.is_error),
                        seconds=time.perf_counter() - started,
                        error=_describe(error) if failed else None,
                        correlation_id=ctx.correlation_id,
                    )
                )
            self._after(call, result, error)

    def _after(self, call: ToolCall, result: ToolResult | None, error: BaseException | None) -> None:
        for hook in self.after_call:
            hook(call, result, error)

    async def _run(self, tool: Tool, args: msgspec.Struct, ctx: ToolContext) -> Any:
        call_args = (args, ctx) if tool.wants_context else (args,)
        with anyio.fail_after(tool.timeout) if tool.timeout else _nullcontext():
            if tool.is_async:
                return await tool.func(*call_args)
            ctx._token = anyio.lowlevel.current_token()
            try:
                # abandon_on_cancel: the caller gets control back at once; the thread sees
                # ctx.cancelled and stops at its next check.
                return await anyio.to_thread.run_sync(tool.func, *call_args, abandon_on_cancel=True)
            except anyio.get_cancelled_exc_class():
                ctx.cancelled.set()
                raise


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _describe(error: BaseException) -> str:
    if isinstance(error, anyio.get_cancelled_exc_class()):
        return "cancelled"
    return str(error) or type(error).__name__


def _signature(func: Callable[..., Any]) -> tuple[type[msgspec.Struct], bool, Any]:
    """The args Struct (first parameter's annotation), whether a context is wanted, and
    the return annotation (``inspect.Signature.empty`` when there is none)."""
    params = list(inspect.signature(func).parameters.values())
    if not params:
        raise TypeError(f"tool {func.__qualname__} must take an arguments Struct (use core.tools.NoArgs)")
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        raise TypeError(
            f"tool {func.__qualname__}: cannot resolve annotations ({exc}); define its arguments Struct "
            "at module level"
        ) from exc
    args_type = hints.get(params[0].name)
    if not (isinstance(args_type, type) and issubclass(args_type, msgspec.Struct)):
        raise TypeError(
            f"tool {func.__qualname__}: first parameter must be annotated with a msgspec.Struct, "
            f"got {args_type!r}"
        )
    return args_type, len(params) > 1, hints.get("return", inspect.Signature.empty)
