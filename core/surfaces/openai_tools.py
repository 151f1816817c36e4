"""Loom's own tools for OpenAI- and Anthropic-API clients, by tool profile.

An app that drives its own model through the OpenAI or Anthropic SDK can give that model
Loom's tools: fetch a profile's tools already shaped as the API's ``tools`` parameter, pass
them to the model, and run the calls it makes here.

* ``GET /v1/tools?profile=<name>&format=openai|anthropic``: the tools profile ``name``
  lists (``core.profiles``: the built-in ``all``, ``media``, ``coding``, ``discover``, and
  every ``[profiles.<name>]`` in loom.toml; MCP serves the same ones at ``/mcp/<name>``),
  as ``data`` (the ``tools`` list itself) and ``names`` (the API name -> Loom's tool name:
  those APIs allow no dots, so ``voice.speak`` is ``voice_speak``). Default: ``all``, ``openai``.
* ``GET /v1/tools/profiles``: the profiles, with their descriptions and tool counts.
* ``POST /v1/tools/call`` ``{"name", "arguments", "profile"}``: run one call the model made
  (``arguments`` as the model wrote them: a JSON string or an object). Only what the profile
  may call is served (its listed tools, plus its ``callable`` ones, e.g. what
  ``tools.search`` found on ``discover``); anything else is a 403 naming the profile. The
  answer carries ``text`` (ready to send back as the ``tool`` message or ``tool_result``),
  ``structured``, ``is_error`` and ``content`` (images and audio as base64).

Errors are OpenAI's JSON, as on every ``/v1`` route.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.profiles import (
    ProfileNotFound,
    api_tools,
    get_profile,
    profile_allows,
    profile_tools,
    profiles,
)
from core.results import Audio, Image, ResourceLink, Text, ToolResult
from core.tools import ToolDenied, ToolError, ToolNotFound

from .openai import ApiError, _decode, _invalid

FORMATS = ("openai", "anthropic")


class ToolCallRequest(msgspec.Struct, kw_only=True):
    name: str
    arguments: str | dict[str, Any] | None = None
    profile: str = "all"


def _profile(name: str, surface: Any) -> str:
    try:
        get_profile(surface.app.config, name)
    except ProfileNotFound as exc:
        raise ApiError(404, str(exc), code="profile_not_found", param="profile") from None
    return name


async def list_tools(surface: Any, request: Request) -> Response:
    profile = _profile(request.query_params.get("profile", "all"), surface)
    fmt = request.query_params.get("format", "openai")
    if fmt not in FORMATS:
        raise _invalid("format must be 'openai' or 'anthropic'", "format")
    specs, names = api_tools(surface.app, profile, fmt)
    return JSONResponse({"object": "list", "profile": profile, "format": fmt, "data": specs, "names": names})


async def list_profiles(surface: Any, request: Request) -> Response:
    app = surface.app
    data = [{"id": name, "object": "tool_profile", "description": p.description,
             "tools": len(profile_tools(app, name)), "mcp_path": f"{app.config.server.mcp_path.rstrip('/')}/{name}"}
            for name, p in sorted(profiles(app.config).items())]
    return JSONResponse({"object": "list", "data": data})


async def call_tool(surface: Any, request: Request) -> Response:
    req: ToolCallRequest = _decode(await surface._body(request), ToolCallRequest)
    app = surface.app
    profile = _profile(req.profile, surface)
    # The model writes the API's name (voice_speak); Loom's own (voice.speak) is accepted too.
    _, names = api_tools(app, profile, "openai")
    tool = names.get(req.name, req.name)
    if tool not in app.tools:
        # A callable-but-unlisted tool (discover) is named the API way as well: map it by the same rule.
        tool = next((t.name for t in app.tools.list() if t.name.replace(".", "_") == req.name), tool)
    if tool not in app.tools:
        raise ApiError(404, f"no tool named {req.name!r}; GET /v1/tools?profile={profile} lists them",
                       code="tool_not_found", param="name")
    if not profile_allows(app, profile, tool):
        raise ApiError(403, f"tool {tool!r} is not in the {profile!r} profile; use a profile that lists it "
                            "(GET /v1/tools/profiles) or profile 'all'", code="not_in_profile", param="profile")
    arguments: Any = req.arguments if req.arguments is not None else {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError as exc:
            raise _invalid(f"arguments is not valid JSON: {exc}", "arguments") from None
    if not isinstance(arguments, dict):
        raise _invalid("arguments must be a JSON object", "arguments")
    ctx = surface._ctx(request)
    ctx.extra["profile"] = profile  # tools.search returns only what this profile may call
    try:
        result: ToolResult = await app.call(tool, arguments, ctx=ctx)
    except (ToolDenied, ToolNotFound):
        raise
    except ToolError as exc:  # bad arguments or a failed call: the model reads it and may try again
        result = ToolResult([Text(str(exc))], is_error=True)
    return JSONResponse({"object": "tool.result", "name": req.name, "tool": tool, "is_error": result.is_error,
                         "text": result.text(), "structured": result.structured,
                         "content": [_content(c) for c in result.content]})


def _content(item: Any) -> dict[str, Any]:
    if isinstance(item, Text):
        return {"type": "text", "text": item.text}
    if isinstance(item, Image | Audio):
        return {"type": "image" if isinstance(item, Image) else "audio", "mime_type": item.mime_type,
                "data": item.b64()}
    if isinstance(item, ResourceLink):
        return {"type": "resource_link", "uri": item.uri, "name": item.name, "mime_type": item.mime_type}
    return msgspec.to_builtins(item)
