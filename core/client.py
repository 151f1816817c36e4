"""Talking to the running daemon from the command line.

``loom serve`` records where it listens in ``<data_dir>/daemon.json`` while it holds the
data-dir lock. The CLI's work commands (``ask``, ``call``, ``route``, ``chat``, ``models``,
``tools``) find it here and call its tools over MCP with the bearer token, so the work
runs on the daemon's warm models, under its policy, and shows up in its metrics and
dashboard like any other client's. ``DaemonSession`` is that connection: progress
notifications come back as they happen, and a consent question (MCP elicitation) is
asked at the terminal.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import datadir
from .results import Audio, Image, ResourceLink, Text, ToolResult

ENDPOINT_FILE = "daemon.json"

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
Asker = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any] | None]]


class DaemonError(RuntimeError):
    pass


def write_endpoint(data_dir: Path, url: str) -> Path:
    """Record the daemon's MCP URL (called by ``loom serve`` once it is bound)."""
    path = Path(data_dir) / ENDPOINT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "mcp_url": url}), encoding="utf-8")
    tmp.replace(path)
    return path


def clear_endpoint(data_dir: Path) -> None:
    path = Path(data_dir) / ENDPOINT_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def running_daemon(data_dir: Path) -> dict[str, Any] | None:
    """``{"pid", "mcp_url"}`` of the daemon holding ``data_dir``, or None when none runs."""
    pid = datadir.holder(data_dir)
    if pid is None or pid == os.getpid():
        return None
    try:
        info = json.loads((Path(data_dir) / ENDPOINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a daemon without HTTP (`loom mcp`) holds the lock
    return info if info.get("pid") == pid and info.get("mcp_url") else None


class DaemonSession:
    """One MCP connection to the daemon for the life of a CLI command."""

    def __init__(self, config: Any, daemon: dict[str, Any], *, ask: Asker | None = None) -> None:
        self.config = config
        self.daemon = daemon
        self.ask = ask
        self._client: Any = None
        self._http: Any = None

    async def __aenter__(self) -> DaemonSession:
        import httpx2
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client

        from .surfaces.http import token_path

        headers = {}
        token_file = token_path(self.config)
        if token_file.exists():
            headers["Authorization"] = f"Bearer {token_file.read_text(encoding='utf-8').strip()}"
        self.token_file = token_file
        self.refused: list[int] = []  # HTTP statuses the daemon answered with: the MCP client hides them

        async def record(response: Any) -> None:
            if response.status_code >= 400:
                self.refused.append(response.status_code)

        self._http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=None),
                                        event_hooks={"response": [record]})
        kw: dict[str, Any] = {}
        if self.ask is not None:
            kw["elicitation_callback"] = self._elicit
        try:
            self._client = Client(streamable_http_client(self.daemon["mcp_url"], http_client=self._http), **kw)
            await self._client.__aenter__()
        except Exception as exc:
            await self._http.aclose()
            raise DaemonError(_explain(exc, self.daemon, token_file, self.refused)
                              + "; or run with --local to work in this process instead") from None
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._client.__aexit__(*exc)
        finally:
            await self._http.aclose()

    async def _elicit(self, ctx: Any, params: Any) -> Any:
        from mcp import types

        answer = await self.ask(params.message, dict(getattr(params, "requested_schema", None) or {}))
        if answer is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content=answer)

    async def call(self, tool: str, arguments: dict[str, Any], *, on_progress: Progress | None = None) -> ToolResult:
        """Call ``tool``; a tool error raises ``ToolError`` with the daemon's message."""
        from mcp import MCPError

        from .tools import ToolError

        try:
            result = await self._client.call_tool(tool, arguments, progress_callback=on_progress)
        except MCPError as exc:
            raise ToolError(str(exc)) from None
        except Exception as exc:  # the connection broke (the daemon stopped, a proxy, ...)
            raise DaemonError(_explain(exc, self.daemon, self.token_file, self.refused)) from None
        content = [c for c in (_content(item) for item in result.content) if c is not None]
        structured = result.structured_content
        if isinstance(structured, dict) and set(structured) == {"result"}:
            structured = structured["result"]
        out = ToolResult(content, structured=structured, is_error=bool(result.is_error))
        if out.is_error:
            raise ToolError(out.text() or f"{tool} failed in the daemon")
        return out

    async def list_tools(self) -> list[dict[str, Any]]:
        tools = (await self._client.list_tools()).tools
        return [{"name": t.name, "description": t.description or "", "input_schema": t.input_schema,
                 "annotations": _annotations(t.annotations)} for t in tools]


def _annotations(a: Any) -> dict[str, Any]:
    if a is None:
        return {}
    out = {"readOnlyHint": a.read_only_hint, "destructiveHint": a.destructive_hint,
           "idempotentHint": a.idempotent_hint, "openWorldHint": a.open_world_hint}
    if a.title:
        out["title"] = a.title
    return out


def _content(item: Any) -> Any:
    kind = getattr(item, "type", None)
    if kind == "text":
        return Text(item.text)
    if kind == "image":
        return Image(base64.b64decode(item.data), item.mime_type)
    if kind == "audio":
        return Audio(base64.b64decode(item.data), item.mime_type)
    if kind == "resource_link":
        return ResourceLink(uri=str(item.uri), name=item.name, mime_type=item.mime_type,
                            description=item.description, size=item.size)
    return None


def _leaves(exc: BaseException) -> list[BaseException]:
    """The real errors inside (nested) exception groups: the MCP client's task groups wrap
    an HTTP 401 as "unhandled errors in a TaskGroup"."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _explain(exc: BaseException, daemon: dict[str, Any], token_file: Path, refused: list[int]) -> str:
    where = f"the daemon (pid {daemon['pid']}) at {daemon['mcp_url']}"
    statuses = [getattr(getattr(leaf, "response", None), "status_code", None) for leaf in _leaves(exc)]
    for status in [*refused, *statuses]:
        if status == 401:
            return (f"{where} refused the token (HTTP 401): check {token_file} is the file `loom serve` printed "
                    "(set [server] token_file, or run the command with the daemon's --config)")
        if status == 403 or status == 421:
            return f"{where} refused this client (HTTP {status}): check [server] allowed_hosts / allowed_origins"
        if isinstance(status, int):
            return f"{where} answered HTTP {status}: {exc}"
    first = _leaves(exc)[0]
    return f"cannot reach {where}: {type(first).__name__}: {first}"


async def call_tool(config: Any, daemon: dict[str, Any], tool: str, arguments: dict[str, Any], *,
                    ask: Asker | None = None) -> Any:
    """Call ``tool`` on the daemon once; returns its structured result (or its text).
    ``ask`` answers a consent question (the policy may ask before admin tools run)."""
    from .tools import ToolError

    session = DaemonSession(config, daemon, ask=ask)
    try:
        async with session:
            try:  # caught inside: the MCP client's task group would wrap it in a group
                result = await session.call(tool, arguments)
            except ToolError as exc:
                raise DaemonError(str(exc)) from None
    except DaemonError:
        raise
    except Exception as exc:  # the tool's own error inside the client's task group, or a broken connection
        ours = [leaf for leaf in _leaves(exc) if isinstance(leaf, DaemonError)]
        if ours:
            raise ours[0] from None
        raise DaemonError(_explain(exc, daemon, session.token_file, session.refused)) from None
    return result.structured if result.structured is not None else result.text()
