"""Talking to the running daemon from the command line.

``loom serve`` records where it listens in ``<data_dir>/daemon.json`` while it holds the
data-dir lock. Commands that act on the daemon's state (``loom models load`` should load
the model *in the daemon*, not in a short-lived CLI process) find it here and call its
tools over MCP with the bearer token, so the daemon's policy and events apply as for any
other client.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import datadir

ENDPOINT_FILE = "daemon.json"


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


async def call_tool(config: Any, daemon: dict[str, Any], tool: str, arguments: dict[str, Any]) -> Any:
    """Call ``tool`` on the daemon; returns its structured result (or its text)."""
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    from .surfaces.http import token_path

    headers = {}
    token_file = token_path(config)
    if token_file.exists():
        headers["Authorization"] = f"Bearer {token_file.read_text(encoding='utf-8').strip()}"
    refused: list[int] = []  # HTTP statuses the daemon answered with: the MCP client hides them

    async def record(response: Any) -> None:
        if response.status_code >= 400:
            refused.append(response.status_code)

    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=None),
                              event_hooks={"response": [record]})
    try:
        async with Client(streamable_http_client(daemon["mcp_url"], http_client=http)) as client:
            result = await client.call_tool(tool, arguments)
    except Exception as exc:
        raise DaemonError(_explain(exc, daemon, token_file, refused)) from None
    finally:
        await http.aclose()
    text = "\n".join(getattr(c, "text", "") for c in result.content)
    if result.is_error:
        raise DaemonError(text or f"{tool} failed in the daemon")
    structured = result.structured_content
    if isinstance(structured, dict) and set(structured) == {"result"}:
        structured = structured["result"]
    return structured if structured is not None else text


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
