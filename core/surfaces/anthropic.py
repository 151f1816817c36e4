"""Anthropic's Messages API on the daemon's port, for apps written against the ``anthropic`` SDK.

``anthropic.Anthropic(base_url="http://127.0.0.1:8765", api_key=<Loom's token>)`` works as
it is: the token is accepted in ``x-api-key`` as well as ``Authorization: Bearer``.

* ``POST /v1/messages``: ``system`` (a string or text blocks), ``messages`` whose content is
  a string or blocks (``text``, base64 ``image`` for a vision model, ``tool_use`` in
  assistant turns, ``tool_result`` in user turns), ``max_tokens``, ``stop_sequences``,
  ``temperature``/``top_p``/``top_k``, ``tools`` (``input_schema``) and ``tool_choice``
  (``auto``, ``any``, ``tool`` and ``none``; the last three are enforced by constrained
  decoding), ``output_config.format`` (a JSON schema, enforced the same way). Sampling
  defaults to Loom's (temperature 0.2); ``temperature`` is honoured when a client sends it
  (newer SDKs only through ``extra_body``). ``stream: true`` sends Anthropic's events in its order: ``message_start``,
  ``ping``, per block ``content_block_start``/``content_block_delta``/``content_block_stop``,
  ``message_delta`` (stop reason and output tokens), ``message_stop``.
* ``POST /v1/messages/count_tokens``: the prompt's tokens through the model's chat template.

``model`` is a configured model name; a ``claude-*`` name means the pool's chat model, so an
app's default model string works unchanged. Errors are Anthropic's
``{"type": "error", "error": {"type", "message"}}``. Generation shares the OpenAI API's
per-model queue, load wait and pool handles.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from core.capabilities import Chat, ChatResult

from .http import api_endpoint
from .openai import ApiError, OpenAISurface, to_api_error
from .tool_stream import ToolTextStream

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                503: "overloaded_error"}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "cancelled": "end_turn"}
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status,
                        headers=headers)


def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


class MessagesRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[Any]
    max_tokens: int | None = None  # required by /v1/messages, absent in count_tokens
    system: str | list[Any] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None  # accepted; these models do not think aloud
    output_config: dict[str, Any] | None = None  # ``format``: a JSON schema the answer must follow
    service_tier: str | None = None


def _decode(body: bytes) -> MessagesRequest:
    if not body.strip():
        raise _invalid("the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=MessagesRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(f"invalid request: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise _invalid("the request body is not valid JSON") from None


def _text_of(blocks: Any, where: str) -> str:
    """A string, or text blocks joined (system prompts, tool results)."""
    if blocks is None:
        return ""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise _invalid(f"{where} must be a string or a list of text blocks")
    out = []
    for j, b in enumerate(blocks):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise _invalid(f"{where}[{j}] must be a text block {{\"type\": \"text\", \"text\": ...}}")
        out.append(b["text"])
    return "\n".join(out)


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source")
    if not isinstance(src, dict) or src.get("type") != "base64":
        raise _invalid(f"{where}: images must have a base64 source ({{\"type\": \"base64\", \"media_type\": "
                       "\"image/png\", \"data\": ...}}); URL sources are not fetched")
    mime = src.get("media_type")
    if mime not in _IMAGE_TYPES:
        raise _invalid(f"{where}: media_type must be one of {sorted(_IMAGE_TYPES)}, got {mime!r}")
    try:
        data = base64.b64decode(src.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise _invalid(f"{where}: the image data is not valid base64") from None
    if not data:
        raise _invalid(f"{where}: the image is empty")
    return {"type": "image", "data": data, "mime_type": mime}


def _call_text(name: str, args: Any) -> str:
    # what the tool prompt teaches the model to write, so its own earlier calls look familiar
    return "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"


def to_chat_messages(req: MessagesRequest, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Anthropic messages as the Chat capability's OpenAI-shaped messages, and the image count."""
    if not req.messages:
        raise _invalid("messages: at least one message is required")
    if len(req.messages) > limit:
        raise _invalid(f"messages: at most {limit} messages per request")
    out: list[dict[str, Any]] = []
    system = _text_of(req.system, "system")
    if system:
        out.append({"role": "system", "content": system})
    names: dict[str, str] = {}  # tool_use id -> tool name, for the tool results that answer it
    images = 0
    for i, msg in enumerate(req.messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise _invalid(f"{where}.role must be 'user' or 'assistant' (the system prompt goes in 'system')")
        role, content = msg["role"], msg.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise _invalid(f"{where}.content must be a string or a list of content blocks")
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise _invalid(f"{at}.text must be a string")
                parts.append({"type": "text", "text": block["text"]})
            elif kind == "image" and role == "user":
                parts.append(_image(block, at))
                images += 1
            elif kind == "tool_use" and role == "assistant":
                if not isinstance(block.get("name"), str) or not isinstance(block.get("input", {}), dict):
                    raise _invalid(f"{at}: tool_use needs a name and an input object")
                cid = str(block.get("id") or f"toolu_{uuid.uuid4().hex[:24]}")
                names[cid] = block["name"]
                calls.append({"id": cid, "type": "function",
                              "function": {"name": block["name"], "arguments": json.dumps(block.get("input", {}))}})
            elif kind == "tool_result" and role == "user":
                tid = block.get("tool_use_id")
                if not isinstance(tid, str):
                    raise _invalid(f"{at}: tool_result needs the tool_use_id it answers")
                text = _text_of([b for b in block.get("content") or [] if b.get("type") == "text"]
                                if isinstance(block.get("content"), list) else block.get("content"), f"{at}.content")
                if block.get("is_error"):
                    text = f"Error: {text}"
                results.append({"role": "tool", "tool_call_id": tid, "name": names.get(tid, ""), "content": text})
            elif kind in ("thinking", "redacted_thinking"):
                continue  # earlier reasoning is not replayed to these models
            else:
                raise _invalid(f"{at}: unsupported block type {kind!r} in a {role} message (text, image and "
                               "tool_result in user turns; text and tool_use in assistant turns)")
        out.extend(results)  # tool results come first in a user turn, as the model saw its calls
        if role == "assistant":
            text = "".join(p["text"] for p in parts)
            msg_out: dict[str, Any] = {"role": "assistant",
                                       "content": text + "".join(_call_text(c["function"]["name"],
                                                                            json.loads(c["function"]["arguments"]))
                                                                 for c in calls)}
            if calls:
                msg_out["tool_calls"] = calls
            out.append(msg_out)
        elif parts:
            only_text = all(p["type"] == "text" for p in parts)
            out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if only_text else parts})
    return out, images


def _tools(req: MessagesRequest) -> dict[str, Any]:
    """``tools``/``tool_choice`` as the Chat capability's options."""
    if not req.tools:
        if req.tool_choice and req.tool_choice.get("type") not in (None, "auto", "none"):
            raise _invalid("tool_choice needs tools")
        return {}
    tools = []
    for i, t in enumerate(req.tools):
        if not isinstance(t.get("name"), str):
            raise _invalid(f"tools[{i}].name is required")
        if t.get("type") not in (None, "custom"):
            raise _invalid(f"tools[{i}]: server tools ({t.get('type')}) are not available here; define the tool "
                           "with a name, description and input_schema")
        tools.append({"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                       "parameters": t.get("input_schema") or {"type": "object"}}})
    choice = req.tool_choice or {"type": "auto"}
    kind = choice.get("type")
    if kind == "auto":
        tc: str | dict[str, Any] = "auto"
    elif kind == "any":
        tc = "required"
    elif kind == "none":
        tc = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        tc = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _invalid("tool_choice.type must be auto, any, none or tool (with a name)")
    return {"tools": tools, "tool_choice": tc}


def _blocks(result: ChatResult) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if result.text:
        out.append({"type": "text", "text": result.text})
    for call in result.tool_calls:
        out.append({"type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex[:24]}", "name": call.name,
                    "input": call.arguments})
    return out


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + msgspec.json.encode({"type": name, **data}) + b"\n\n"


class AnthropicSurface:
    def __init__(self, app: Any, openai: OpenAISurface) -> None:
        self.app = app
        self.openai = openai  # its queue, load wait and model checks are shared
        self.ops = openai.ops

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/messages", self._wrap(self.messages), methods=["POST"]),
                Route("/v1/messages/count_tokens", self._wrap(self.count_tokens), methods=["POST"])]

    def _wrap(self, handler: Any) -> Any:
        def on_error(exc: Exception) -> Response:
            err = to_api_error(exc)
            retry = err.response().headers.get("Retry-After")
            return error_response(err.status, err.message, {"Retry-After": retry} if retry else None)

        return api_endpoint(handler, self.ops.draining, on_error=on_error, shutting_down=lambda: error_response(
            503, "the daemon is shutting down; retry shortly", {"Retry-After": "5"}))

    async def _request(self, request: Request) -> MessagesRequest:
        return _decode(await self.openai._body(request))

    def _model(self, name: str) -> str:
        """A configured chat model; ``claude-*`` names mean the pool's chat model (the one with
        role "chat", else the first configured model that serves chat)."""
        models = self.app.pool.models()
        if name not in models and name.startswith("claude"):
            try:
                name = self.app.pool.model_for("chat")
            except Exception:
                chat = [n for n in sorted(models) if self._serves_chat(n)]
                if not chat:
                    raise ApiError(404, f"model {name!r}: no chat model is configured; add one under "
                                        "[models.<name>] in loom.toml") from None
                name = chat[0]
        if name not in models:
            known = ", ".join(sorted(models)) or "none"
            raise ApiError(404, f"model {name!r} does not exist; available: {known} (a claude-* name means the "
                                "default chat model)")
        self.openai._chat_model(name)
        return name

    def _serves_chat(self, name: str) -> bool:
        try:
            self.openai._chat_model(name)
        except ApiError:
            return False
        return True

    async def count_tokens(self, request: Request) -> Response:
        req = await self._request(request)
        name = self._model(req.model)
        messages, _ = to_chat_messages(req, self.openai.settings.max_messages)
        await self.openai._ensure_loaded(name)
        async with self.app.pool.use(name, Chat, reason="token count over the Anthropic API") as chat:
            tokens = await chat.count_tokens(messages)
            if req.tools:  # the tool prompt the template adds
                tokens += await chat.count_tokens(json.dumps(req.tools))
        return JSONResponse({"input_tokens": tokens})

    async def messages(self, request: Request) -> Response:
        req = await self._request(request)
        if req.max_tokens is None:
            raise _invalid("max_tokens: Field required")
        if req.max_tokens < 1:
            raise _invalid("max_tokens must be at least 1")
        name = self._model(req.model)
        cfg = self.app.pool.models()[name]
        messages, images = to_chat_messages(req, self.openai.settings.max_messages)
        if images and not cfg.mmproj:
            raise _invalid(f"model {name!r} cannot see images: it has no vision projector (mmproj); use a vision "
                           "model")
        options: dict[str, Any] = {"max_tokens": req.max_tokens, **_tools(req)}
        for key in ("temperature", "top_p", "top_k"):
            if getattr(req, key) is not None:
                options[key] = getattr(req, key)
        if req.stop_sequences:
            options["stop"] = list(req.stop_sequences)
        fmt = (req.output_config or {}).get("format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
                raise _invalid("output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}")
            options["response_format"] = {"type": "json_schema", "json_schema": {"name": "output",
                                                                                 "schema": fmt["schema"]}}
        self.ops.queue.check(name)
        await self.openai._ensure_loaded(name)
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        if req.stream:
            return StreamingResponse(self._stream(name, mid, messages, options), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        async with self.ops.queue.slot(name), self.app.pool.use(name, Chat, reason="chat over the Anthropic API") \
                as chat:
            result = await chat.complete(messages, **options)
        if result.finish_reason == "error":
            raise ApiError(500, "generation failed")
        return JSONResponse({
            "id": mid, "type": "message", "role": "assistant", "model": name, "content": _blocks(result),
            "stop_reason": _STOP.get(result.finish_reason, "end_turn"), "stop_sequence": None,
            "usage": {"input_tokens": result.usage.prompt_tokens, "output_tokens": result.usage.completion_tokens},
        })

    async def _stream(self, name: str, mid: str, messages: list[dict[str, Any]],
                      options: dict[str, Any]) -> AsyncIterator[bytes]:
        queue = self.ops.queue
        ticket = queue.enter(name)
        tools = bool(options.get("tools")) and options.get("tool_choice") != "none"
        try:
            while not ticket.granted:
                yield _event("ping", {})  # keeps the connection alive while queued
                await ticket.wait(1.0)
            async with self.app.pool.use(name, Chat, reason="chat over the Anthropic API") as chat:
                prompt_tokens = await chat.count_tokens(messages)
                yield _event("message_start", {"message": {
                    "id": mid, "type": "message", "role": "assistant", "model": name, "content": [],
                    "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": 0}}})
                yield _event("ping", {})
                index = 0
                text_open = False
                # With tools the text may be a call: prose streams, a call waits until it is parsed.
                calls = ToolTextStream() if tools else None
                async with chat.stream(messages, **options) as s:
                    async for delta in s:
                        delta += s.drain_text()
                        if calls is not None:
                            delta = calls.feed(delta)
                        if not delta:
                            continue
                        if not text_open:
                            yield _event("content_block_start",
                                         {"index": index, "content_block": {"type": "text", "text": ""}})
                            text_open = True
                        yield _event("content_block_delta",
                                     {"index": index, "delta": {"type": "text_delta", "text": delta}})
                result = s.result
            queue.leave(ticket)
            assert result is not None
            if result.finish_reason == "error":
                yield _event("error", {"error": {"type": "api_error", "message": "generation failed"}})
                return
            rest = calls.finish(result.text) if calls is not None else ""
            if rest:
                if not text_open:
                    yield _event("content_block_start",
                                 {"index": index, "content_block": {"type": "text", "text": ""}})
                    text_open = True
                yield _event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": rest}})
            if text_open:
                yield _event("content_block_stop", {"index": index})
                index += 1
            for block in _blocks(msgspec.structs.replace(result, text="")):
                yield _event("content_block_start", {"index": index, "content_block": {**block, "input": {}}})
                yield _event("content_block_delta", {"index": index, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
                yield _event("content_block_stop", {"index": index})
                index += 1
            yield _event("message_delta", {
                "delta": {"stop_reason": _STOP.get(result.finish_reason, "end_turn"), "stop_sequence": None},
                "usage": {"output_tokens": result.usage.completion_tokens}})
            yield _event("message_stop", {})
        except Exception as exc:  # headers are sent: the error goes in the stream
            err = to_api_error(exc)
            yield _event("error", {"error": {"type": _ERROR_TYPES.get(err.status, "api_error"),
                                             "message": err.message}})
        finally:
            queue.leave(ticket)
